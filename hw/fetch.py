"""Instruction fetch: reads the program's words from memory into a FIFO for dispatch."""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.hw.axi import AxiReadSignature
from gemmstone.hw.dma import DmaReader
from gemmstone.isa.table import WORD_BITS, WORD_BYTES

__all__ = ["Fetch", "FIFO_DEPTH"]

FIFO_DEPTH = 32


class Fetch(wiring.Component):
    """Reads ``count`` 16-byte words from ``base`` in order.

    Fetch asks only for words it has room for (FIFO space not promised to reads in flight):
    the shared AXI read channel must never stall on a full fetch FIFO, or a unit whose data
    sits behind those beats could wait forever for the dispatch that waits on it.

    Parameters
    ----------
    data_bytes : int
        AXI data width.

    Members
    -------
    start : In(1)
        Pulse: forget any earlier words; fetch ``count`` words from ``base``.
    base, count : In(32)
    stop : In(1)
        Request no more words (reads in flight still complete).
    words : Out(stream.Signature(WORD_BITS))
    axi : Out(AxiReadSignature)
    busy : Out(1)
        Reads are in flight.
    """

    def __init__(self, *, data_bytes: int) -> None:
        self.data_bytes = data_bytes
        super().__init__({
            "start": In(1),
            "base": In(32),
            "count": In(32),
            "stop": In(1),
            "words": Out(stream.Signature(WORD_BITS)),
            "axi": Out(AxiReadSignature(data_bytes=data_bytes)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = DmaReader(line_bytes=WORD_BYTES, data_bytes=self.data_bytes)
        m.submodules.fifo = words = ResetInserter(self.start)(
            fifo.SyncFIFOBuffered(width=WORD_BITS, depth=FIFO_DEPTH))
        wiring.connect(m, wiring.flipped(self.axi), dma.axi)

        address = Signal(32)
        remaining = Signal(32)
        in_flight = Signal(range(FIFO_DEPTH + 1))  # words asked for, not yet arrived
        free = Signal(range(FIFO_DEPTH + 1))
        m.d.comb += free.eq(FIFO_DEPTH - words.level - in_flight)
        ask = Mux(remaining < free, remaining, free)

        m.d.comb += [
            dma.cmd.valid.eq((remaining != 0) & (free != 0) & ~self.stop & ~self.start),
            dma.cmd.payload.addr.eq(address),
            dma.cmd.payload.stride.eq(WORD_BYTES),
            dma.cmd.payload.n.eq(ask),
            dma.cmd.payload.len.eq(WORD_BYTES),
            words.w_data.eq(dma.lines.payload.data.as_value()),
            words.w_en.eq(dma.lines.valid),
            dma.lines.ready.eq(words.w_rdy),
            self.words.payload.eq(words.r_data),
            self.words.valid.eq(words.r_rdy),
            words.r_en.eq(self.words.ready),
            self.busy.eq((in_flight != 0) | dma.busy),
        ]
        asked = dma.cmd.valid & dma.cmd.ready
        arrived = dma.lines.valid & dma.lines.ready
        m.d.sync += in_flight.eq(in_flight + Mux(asked, ask, 0) - arrived)
        with m.If(self.start):
            m.d.sync += [address.eq(self.base), remaining.eq(self.count)]
        with m.Elif(asked):
            m.d.sync += [address.eq(address + ask * WORD_BYTES), remaining.eq(remaining - ask)]
        return m
