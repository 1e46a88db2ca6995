"""The load unit: executes LOAD (DRAM -> scratchpad, 2-D strided, zero padding)."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.axi import AxiReadSignature
from gemmstone.hw.dispatch import QueueEntry
from gemmstone.hw.dma import DmaReader
from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS
from gemmstone.hw.unit_ports import (
    FAULT_ADDRESS_BITS,
    FaultSignature,
    TokenLinkSignature,
    WindowSignature,
    tokens_ready,
)
from gemmstone.isa.errors import ErrorCode

__all__ = ["LoadUnit"]


class LoadUnit(wiring.Component):
    """Runs the load queue in order.

    Each LOAD waits for its tokens, is checked (``len``, scratchpad range, DMA window, in
    the functional model's order) before any byte moves, issues one DMA read, writes its
    ``pad_lo`` zero lines while the first data is on its way, then one line per DMA line,
    then the ``pad_hi`` zero lines, and pushes its tokens.

    Members
    -------
    queue : In(stream.Signature(QueueEntry))
    next : Out(TokenLinkSignature)
        Tokens with the compute unit.
    window : In(WindowSignature)
    spad : Out(WritePort.Signature), flipped
        The scratchpad write port (lines of ``line_bytes`` bytes).
    axi : Out(AxiReadSignature)
    fault : Out(FaultSignature)
    clear : In(1)
        A run starts: forget the last fault.
    stop : In(1)
        Start no new instruction (a fault elsewhere).
    idle, busy, token_wait, dma_wait : Out(1)
        State for dispatch and the performance counters.
    active : Out(1)
        Executing, draining or waiting for DMA transfers (the core may not end a run).
    retired : Out(1)
        Strobe: an instruction finished (a matmul when its last line is in the array).
        State for dispatch and the performance counters.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        self.config = config
        self.line = data.ArrayLayout(unsigned(8), config.line_bytes)
        super().__init__({
            "queue": In(stream.Signature(QueueEntry)),
            "next": Out(TokenLinkSignature(config.token_depth)),
            "window": In(WindowSignature()),
            "spad": In(memory.WritePort.Signature(addr_width=config.spad_addr_bits,
                                                  shape=self.line)),
            "axi": Out(AxiReadSignature(data_bytes=config.dram_bytes_per_cycle)),
            "fault": Out(FaultSignature()),
            "clear": In(1),
            "stop": In(1),
            "idle": Out(1),
            "active": Out(1),
            "retired": Out(1),
            "busy": Out(1),
            "token_wait": Out(1),
            "dma_wait": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.dma = dma = DmaReader(line_bytes=c.line_bytes,
                                           data_bytes=c.dram_bytes_per_cycle)
        wiring.connect(m, wiring.flipped(self.axi), dma.axi)

        head = HEADER_LAYOUT(self.queue.payload.word)
        entry = Signal(QueueEntry)
        load = INSTRUCTION_LAYOUTS["load"](entry.word)
        header = HEADER_LAYOUT(entry.word)
        line = Signal(range(c.spad_lines + 3 * 256))  # next scratchpad line to write
        left = Signal(16)                              # lines left in the current phase
        total = Signal(range(3 * 4096))
        last_byte = Signal(FAULT_ADDRESS_BITS)

        m.d.comb += [
            self.spad.data.eq(0),
            dma.cmd.payload.addr.eq(self.window.base + load.dram),
            dma.cmd.payload.stride.eq(load.stride),
            dma.cmd.payload.n.eq(load.n),
            dma.cmd.payload.len.eq(load.len),
        ]

        def fail(code: ErrorCode, address) -> None:
            m.d.sync += [self.fault.valid.eq(1), self.fault.code.eq(code),
                         self.fault.index.eq(entry.index), self.fault.address.eq(address)]
            m.next = "FAULT"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~self.queue.valid)
                ready = tokens_ready(head, {"next": self.next})
                with m.If(self.queue.valid & ~self.stop & ~self.clear):
                    m.d.comb += self.token_wait.eq(~ready)
                    with m.If(ready):
                        m.d.comb += [self.queue.ready.eq(1), self.next.pop.eq(head.pop_next)]
                        m.d.sync += entry.eq(self.queue.payload)
                        m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += total.eq(load.pad_lo + load.n + load.pad_hi)
                m.d.comb += last_byte.eq(load.dram + (load.n - 1) * load.stride + load.len - 1)
                with m.If((load.len == 0) | (load.len > c.line_bytes)):
                    fail(ErrorCode.OPERAND, 0)
                with m.Elif((total != 0) & (load.spad + total > c.spad_lines)):
                    fail(ErrorCode.SPAD_RANGE, load.spad + total - 1)
                with m.Elif((load.n != 0) & (last_byte >= self.window.size)):
                    fail(ErrorCode.DMA_WINDOW, last_byte)
                with m.Else():
                    m.d.sync += [line.eq(load.spad), left.eq(load.pad_lo)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [self.busy.eq(1), dma.cmd.valid.eq(load.n != 0)]
                with m.If((load.n == 0) | dma.cmd.ready):
                    m.next = "PAD_LO"
            with m.State("PAD_LO"):
                m.d.comb += self.busy.eq(1)
                with m.If(left != 0):
                    m.d.comb += [self.spad.en.eq(1), self.spad.addr.eq(line)]
                    m.d.sync += [line.eq(line + 1), left.eq(left - 1)]
                with m.Else():
                    m.d.sync += left.eq(load.n)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(left != 0):
                    m.d.comb += [
                        dma.lines.ready.eq(1),
                        self.dma_wait.eq(~dma.lines.valid),
                        self.spad.en.eq(dma.lines.valid),
                        self.spad.addr.eq(line),
                        self.spad.data.eq(dma.lines.payload.data),
                    ]
                    with m.If(dma.lines.valid):
                        m.d.sync += [line.eq(line + 1), left.eq(left - 1)]
                with m.Else():
                    m.d.sync += left.eq(load.pad_hi)
                    m.next = "PAD_HI"
            with m.State("PAD_HI"):
                m.d.comb += self.busy.eq(1)
                with m.If(left != 0):
                    m.d.comb += [self.spad.en.eq(1), self.spad.addr.eq(line)]
                    m.d.sync += [line.eq(line + 1), left.eq(left - 1)]
                with m.Else():
                    m.d.comb += [self.next.push.eq(header.push_next), self.retired.eq(1)]
                    m.next = "IDLE"
            with m.State("FAULT"), m.If(self.clear):
                m.d.sync += self.fault.valid.eq(0)
                m.next = "IDLE"
        m.d.comb += self.active.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("FAULT")
                                   | dma.busy)
        return m
