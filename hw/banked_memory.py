"""`BankedMemory`: a memory split into banks, with ports shaped like `amaranth.lib.memory`'s."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Shape, ShapeCastable, Signal, Value
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from gemmstone.hw.params import check_int, check_power_of_two

__all__ = ["BankedMemory", "check_geometry"]


def check_geometry(depth: object, banks: object) -> int:
    """The address width of ``depth`` rows in ``banks`` banks, once both are checked.

    Raises
    ------
    TypeError
        If either is not an integer.
    ValueError
        If ``depth < 1``, ``banks`` is not a power of two or does not divide ``depth``.
    """
    check_int("depth", depth)
    check_power_of_two("banks", banks)
    if depth % banks:
        raise ValueError(f"'depth' ({depth}) must be a multiple of 'banks' ({banks})")
    return ceil_log2(depth)


class BankedMemory(wiring.Component):
    """``depth`` rows of ``shape``, stored in ``banks`` memories, with read and write ports
    that behave like those of one `amaranth.lib.memory.Memory`.

    Row ``a`` lives in bank ``a % banks`` (low-order interleaving: any depth that is a
    multiple of ``banks`` splits without a divider, and a sequential stream visits every
    bank). Each bank has one memory write port and one memory read port per read port of
    this component, so reads never conflict. Write ports that write the same bank in the same
    cycle do: the lowest-numbered one is written, the others are dropped, and ``collision``
    is high in that cycle (callers should never let it happen; cores report it as a fault).

    A read port with ``en`` high at a clock edge presents the row's content after that edge's
    write (transparency) one cycle later; with ``en`` low its ``data`` holds. Addresses must
    be below ``depth``.

    Parameters
    ----------
    shape : shape-castable
        Shape of one row, e.g. ``data.ArrayLayout(unsigned(8), 16)``.
    depth : int
        Number of rows, a multiple of ``banks``.
    banks : int
        Number of banks, a power of two.
    read_ports, write_ports : int
        Number of ports of each kind, at least 1.

    Members
    -------
    read : ``Out(memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=shape))``
        One per read port (``read[0]``, ...). Connects to a flipped ``ReadPort.Signature``.
    write : ``Out(memory.WritePort.Signature(addr_width=ceil_log2(depth), shape=shape))``
        One per write port (``write[0]``, ...), whole rows.
    collision : ``Out(1)``
        Two or more write ports write the same bank this cycle.

    Raises
    ------
    TypeError
        If ``shape`` is not shape-castable or a count is not an integer.
    ValueError
        If a count is out of range or ``depth`` is not a multiple of ``banks``.
    """

    def __init__(self, *, shape, depth: int, banks: int = 1, read_ports: int = 1,
                 write_ports: int = 1) -> None:
        if not isinstance(shape, (Shape, ShapeCastable, int, range)):
            raise TypeError(f"'shape' must be a shape-castable object, not {shape!r}")
        self.addr_width = check_geometry(depth, banks)
        check_int("read_ports", read_ports)
        check_int("write_ports", write_ports)
        self.shape, self.depth, self.banks = shape, depth, banks
        bank_bits = ceil_log2(banks)
        self._address = data.StructLayout({
            "bank": bank_bits,
            "row": max(self.addr_width - bank_bits, 0),
        })
        super().__init__({
            "read": Out(memory.ReadPort.Signature(addr_width=self.addr_width, shape=shape)
                        ).array(read_ports),
            "write": Out(memory.WritePort.Signature(addr_width=self.addr_width, shape=shape)
                         ).array(write_ports),
            "collision": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        rows_per_bank = self.depth // self.banks
        reads = [self._address(port.addr) for port in self.read]
        writes = [self._address(port.addr) for port in self.write]
        bank_data = [[] for _ in self.read]
        for bank in range(self.banks):
            store = memory.Memory(shape=self.shape, depth=rows_per_bank, init=[])
            m.submodules[f"bank{bank}"] = store
            write_port = store.write_port()
            # Lowest-numbered port last: the last assignment wins.
            for port, address in reversed(list(zip(self.write, writes, strict=True))):
                with m.If(port.en & (address.bank == bank)):
                    m.d.comb += [write_port.en.eq(1), write_port.addr.eq(address.row),
                                 write_port.data.eq(port.data)]
            for index, (port, address) in enumerate(zip(self.read, reads, strict=True)):
                read_port = store.read_port(transparent_for=(write_port,))
                m.d.comb += [read_port.addr.eq(address.row),
                             read_port.en.eq(port.en & (address.bank == bank))]
                bank_data[index].append(Value.cast(read_port.data))

        for port, address, choices in zip(self.read, reads, bank_data, strict=True):
            source = Signal.like(address.bank)  # the bank whose data the port shows
            with m.If(port.en):
                m.d.sync += source.eq(address.bank)
            m.d.comb += port.data.eq(Array(choices)[source])

        pairs = [a.en & b.en & (wa.bank == wb.bank)
                 for i, (a, wa) in enumerate(zip(self.write, writes, strict=True))
                 for b, wb in list(zip(self.write, writes, strict=True))[i + 1:]]
        m.d.comb += self.collision.eq(Cat(*pairs).any() if pairs else 0)
        return m
