"""The load unit: executes LOAD (DRAM -> scratchpad, 2-D strided, zero padding).

Two stages, so consecutive LOADs overlap: the front takes an instruction (its tokens),
checks it (``len``, scratchpad range, DMA window, in the functional model's order) before
any byte moves, and issues its DMA read; the back writes the ``pad_lo`` zero lines, one
line per DMA line, the ``pad_hi`` zero lines, then pushes the tokens. The front issues the
next LOAD's read while the back still writes the current one, which hides the DRAM latency
between LOADs. Scratchpad writes and token pushes stay in program order.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.axi import AxiReadSignature
from gemmstone.hw.dispatch import QueueEntry
from gemmstone.hw.dma import DmaReader
from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS
from gemmstone.hw.unit_ports import (
    FAULT_ADDRESS_BITS,
    tokens_ready,
    unit_members,
)
from gemmstone.isa.errors import ErrorCode

__all__ = ["LoadUnit"]


class LoadUnit(wiring.Component):
    """Runs the load queue in order (see the module docstring).

    Members
    -------
    spad : Out(WritePort.Signature), flipped
        The scratchpad write port (lines of ``line_bytes`` bytes).
    axi : Out(AxiReadSignature)
    queue, window, fault, clear, stop, idle, active, retired, busy, token_wait, dma_wait
        and the token links: see `unit_members`.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        self.config = config
        self.line = data.ArrayLayout(unsigned(8), config.line_bytes)
        super().__init__({
            "spad": In(memory.WritePort.Signature(addr_width=config.spad_addr_bits,
                                                  shape=self.line)),
            "axi": Out(AxiReadSignature(data_bytes=config.dram_bytes_per_cycle)),
            **unit_members(config, sides=("next",)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.dma = dma = DmaReader(line_bytes=c.line_bytes,
                                           data_bytes=c.dram_bytes_per_cycle)
        wiring.connect(m, wiring.flipped(self.axi), dma.axi)

        head = HEADER_LAYOUT(self.queue.payload.word)
        front = Signal(QueueEntry)  # the instruction the front checks and issues
        back = Signal(QueueEntry)   # the instruction the back writes
        load = INSTRUCTION_LAYOUTS["load"](front.word)
        written = INSTRUCTION_LAYOUTS["load"](back.word)
        back_header = HEADER_LAYOUT(back.word)
        back_busy = Signal()
        handoff = Signal()          # the front passes its instruction to the back
        total = Signal(range(3 * 4096))
        last_byte = Signal(FAULT_ADDRESS_BITS)

        m.d.comb += [
            self.spad.data.eq(0),
            dma.cmd.payload.addr.eq(self.window.base + load.dram),
            dma.cmd.payload.stride.eq(load.stride),
            dma.cmd.payload.n.eq(load.n),
            dma.cmd.payload.len.eq(load.len),
        ]
        # The back's pending push counts against the room the next LOAD needs.
        promised = {"next": back_busy & back_header.push_next}

        with m.FSM(name="front") as front_fsm:
            with m.State("IDLE"):
                ready = tokens_ready(head, {"next": self.next}, promised)
                with m.If(self.queue.valid & ~self.stop & ~self.clear):
                    m.d.comb += self.token_wait.eq(~ready)
                    with m.If(ready):
                        m.d.comb += [self.queue.ready.eq(1), self.next.pop.eq(head.pop_next)]
                        m.d.sync += front.eq(self.queue.payload)
                        m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += [
                    total.eq(load.pad_lo + load.n + load.pad_hi),
                    last_byte.eq(load.dram + (load.n - 1) * load.stride + load.len - 1),
                ]
                fault = [self.fault.valid.eq(1), self.fault.index.eq(front.index)]
                with m.If((load.len == 0) | (load.len > c.line_bytes)):
                    m.d.sync += fault + [self.fault.code.eq(ErrorCode.OPERAND),
                                         self.fault.address.eq(0)]
                    m.next = "FAULT"
                with m.Elif((total != 0) & (load.spad + total > c.spad_lines)):
                    m.d.sync += fault + [self.fault.code.eq(ErrorCode.SPAD_RANGE),
                                         self.fault.address.eq(load.spad + total - 1)]
                    m.next = "FAULT"
                with m.Elif((load.n != 0) & (last_byte >= self.window.size)):
                    m.d.sync += fault + [self.fault.code.eq(ErrorCode.DMA_WINDOW),
                                         self.fault.address.eq(last_byte)]
                    m.next = "FAULT"
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += dma.cmd.valid.eq(load.n != 0)
                with m.If((load.n == 0) | dma.cmd.ready):
                    m.next = "HANDOFF"
            with m.State("HANDOFF"):
                with m.If(~back_busy):
                    m.d.comb += handoff.eq(1)
                    m.next = "IDLE"
            with m.State("FAULT"):
                with m.If(self.clear):
                    m.d.sync += self.fault.valid.eq(0)
                    m.next = "IDLE"

        line = Signal(range(c.spad_lines + 3 * 256))  # next scratchpad line to write
        left = Signal(16)                              # lines left in the current phase
        with m.FSM(name="back"):
            with m.State("FREE"):
                with m.If(handoff):
                    m.d.sync += [back.eq(front), back_busy.eq(1), line.eq(load.spad),
                                 left.eq(load.pad_lo)]
                    m.next = "PAD_LO"
            with m.State("PAD_LO"):
                with m.If(left != 0):
                    m.d.comb += [self.spad.en.eq(1), self.spad.addr.eq(line)]
                    m.d.sync += [line.eq(line + 1), left.eq(left - 1)]
                with m.Else():
                    m.d.sync += left.eq(written.n)
                    m.next = "DATA"
            with m.State("DATA"):
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
                    m.d.sync += left.eq(written.pad_hi)
                    m.next = "PAD_HI"
            with m.State("PAD_HI"):
                with m.If(left != 0):
                    m.d.comb += [self.spad.en.eq(1), self.spad.addr.eq(line)]
                    m.d.sync += [line.eq(line + 1), left.eq(left - 1)]
                with m.Else():
                    m.d.comb += [self.next.push.eq(back_header.push_next), self.retired.eq(1)]
                    m.d.sync += back_busy.eq(0)
                    m.next = "FREE"

        front_working = ~front_fsm.ongoing("IDLE") & ~front_fsm.ongoing("FAULT")
        m.d.comb += [
            self.idle.eq(~self.queue.valid & front_fsm.ongoing("IDLE") & ~back_busy),
            self.busy.eq(front_working | back_busy),
            self.active.eq(front_working | back_busy | dma.busy),
        ]
        return m
