"""Share one AXI4 read port among several DMA readers (fetch, load, compute, store)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gemmstone.hw.axi import AxiReadSignature
from gemmstone.hw.params import check_int

__all__ = ["AxiReadArbiter"]


class AxiReadArbiter(wiring.Component):
    """Round-robin arbiter of read-address requests; read data routed back by ID.

    Client ``i``'s requests go out with ``arid = i`` (its own ID bits are dropped: each
    client keeps its bursts in order, and AXI returns bursts of one ID in order), and the
    data beats with ``rid = i`` go back to client ``i``. A grant is held until its address
    handshake completes, so a client's ``araddr``/``arlen`` never change under ``arvalid``.

    Parameters
    ----------
    clients : int
        Number of readers.
    data_bytes, addr_width : int
        Bus shape, as `AxiReadSignature`.

    Members
    -------
    client<i> : In(AxiReadSignature(id_width=1)) for each client
    bus : Out(AxiReadSignature(id_width=ceil_log2(clients) or 1))
    """

    def __init__(self, *, clients: int, data_bytes: int, addr_width: int = 32) -> None:
        check_int("clients", clients)
        self.clients = clients
        self.id_width = max(1, ceil_log2(clients))
        members = {f"client{i}": In(AxiReadSignature(addr_width=addr_width,
                                                      data_bytes=data_bytes))
                   for i in range(clients)}
        members["bus"] = Out(AxiReadSignature(addr_width=addr_width, data_bytes=data_bytes,
                                              id_width=self.id_width))
        super().__init__(members)

    def client(self, index: int):
        return getattr(self, f"client{index}")

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        grant = Signal(range(self.clients))
        # A request is presented while its client holds the grant; once the handshake is
        # done (or the client does not ask), the grant moves to the next asking client,
        # searching from the one after the current grant.
        requests = [self.client(i).arvalid for i in range(self.clients)]
        with m.If(~(bus.arvalid & ~bus.arready)):
            for offset in reversed(range(1, self.clients + 1)):
                for current in range(self.clients):
                    candidate = (current + offset) % self.clients
                    with m.If((grant == current) & requests[candidate]):
                        m.d.sync += grant.eq(candidate)
        with m.Switch(grant):
            for i in range(self.clients):
                client = self.client(i)
                with m.Case(i):
                    m.d.comb += [
                        bus.arid.eq(i), bus.araddr.eq(client.araddr), bus.arlen.eq(client.arlen),
                        bus.arsize.eq(client.arsize), bus.arburst.eq(client.arburst),
                        bus.arvalid.eq(client.arvalid), client.arready.eq(bus.arready),
                    ]
        for i in range(self.clients):
            client = self.client(i)
            selected = bus.rid == i
            m.d.comb += [
                client.rid.eq(0), client.rdata.eq(bus.rdata), client.rresp.eq(bus.rresp),
                client.rlast.eq(bus.rlast), client.rvalid.eq(bus.rvalid & selected),
            ]
            with m.If(selected):
                m.d.comb += bus.rready.eq(client.rready)
        return m
