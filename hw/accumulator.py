"""`Accumulator`: the banked buffer of int32 result rows, which adds in place."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.banked_memory import BankedMemory, check_geometry
from gemmstone.hw.params import check_int

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """``depth`` rows of ``cols`` signed ``width``-bit elements in ``banks`` banks.

    Rows are written in two ways:

    * ``accumulate``: a stream that takes one row per cycle, never back-pressured. Each
      transfer writes ``row[addr] = (accumulate ? row[addr] : 0) + data`` (element-wise,
      wrapping at ``width`` bits) two cycles later: the old row is read in the transfer's
      cycle and the sum written at the next edge. Back-to-back transfers to the same row
      add up correctly (the read sees the write of the edge it happens at), so a systolic
      array's output stream can feed it directly.
    * ``write``: a plain memory write port (whole rows, written at the edge).

    The two may be used in the same cycle; writing the same bank at the same edge is a
    caller error (``collision`` is high, the ``accumulate`` write wins). Read ports behave
    like transparent `amaranth.lib.memory` read ports: a row read at an edge includes that
    edge's write; an ``accumulate`` transfer taken at edge ``t`` is therefore visible to
    reads from edge ``t + 1`` on.

    Parameters
    ----------
    cols : int
        Elements per row (the array's ``cols``).
    depth : int
        Number of rows, a multiple of ``banks``.
    banks : int
        Number of banks, a power of two (see `BankedMemory`).
    read_ports : int
        Number of read ports (the compute unit's ALU operands, the store unit).
    width : int
        Element width (32 for int32).

    Members
    -------
    accumulate : ``In(stream.Signature(data.StructLayout({"addr": addr_width, "data": row,
    "accumulate": 1}), always_ready=True))``
        Rows to write or add in place.
    write : ``Out(memory.WritePort.Signature(addr_width=addr_width, shape=row))``
        Plain row writes.
    read : ``Out(memory.ReadPort.Signature(addr_width=addr_width, shape=row))``
        One per read port (``read[0]``, ...).
    collision : ``Out(1)``
        ``write`` and an ``accumulate`` write hit the same bank at this edge.

    Raises
    ------
    TypeError, ValueError
        If a parameter is not an integer or out of range (see `BankedMemory`).
    """

    def __init__(self, *, cols: int, depth: int, banks: int = 1, read_ports: int = 1,
                 width: int = 32) -> None:
        self.cols = check_int("cols", cols)
        self.width = check_int("width", width)
        self.addr_width = check_geometry(depth, banks)
        self.read_ports = check_int("read_ports", read_ports)
        self.depth, self.banks = depth, banks
        self.row = data.ArrayLayout(signed(width), cols)
        super().__init__({
            "accumulate": In(stream.Signature(data.StructLayout({
                "addr": self.addr_width,
                "data": self.row,
                "accumulate": 1,
            }), always_ready=True)),
            "write": Out(memory.WritePort.Signature(addr_width=self.addr_width,
                                                    shape=self.row)),
            "read": Out(memory.ReadPort.Signature(addr_width=self.addr_width, shape=self.row)
                        ).array(read_ports),
            "collision": Out(1),
        })

    @classmethod
    def from_config(cls, config: AcceleratorConfig, *, read_ports: int = 1) -> Accumulator:
        """The accumulator of ``config``: ``acc_rows`` rows in ``acc_banks`` banks."""
        return cls(cols=config.cols, depth=config.acc_rows, banks=config.acc_banks,
                   read_ports=read_ports, width=8 * config.acc_elem_bytes)

    def elaborate(self, platform) -> Module:
        m = Module()
        # One more read port than the callers': the adder's.
        m.submodules.store = store = BankedMemory(
            shape=self.row, depth=self.depth, banks=self.banks,
            read_ports=self.read_ports + 1, write_ports=2)
        for outer, inner in zip(self.read, store.read[:-1], strict=True):
            wiring.connect(m, wiring.flipped(outer), inner)
        m.d.comb += self.collision.eq(store.collision)

        # Stage 1 (the transfer's cycle): read the old row. Stage 2: add, write at the edge.
        request = self.accumulate
        old = store.read[-1]
        m.d.comb += [old.addr.eq(request.payload.addr), old.en.eq(request.valid)]
        pending = Signal.like(request.payload)
        pending_valid = Signal()
        m.d.sync += [pending.eq(request.payload), pending_valid.eq(request.valid)]
        total = Signal(self.row)
        for j in range(self.cols):
            addend = Mux(pending.accumulate, old.data[j], 0)
            m.d.comb += total[j].eq(addend + pending.data[j])
        adder_port, plain_port = store.write
        m.d.comb += [
            adder_port.en.eq(pending_valid),
            adder_port.addr.eq(pending.addr),
            adder_port.data.eq(total),
        ]
        wiring.connect(m, wiring.flipped(self.write), plain_port)
        return m
