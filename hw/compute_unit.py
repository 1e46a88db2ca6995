"""The compute unit: executes PRELOAD, MATMUL, LOADACC and ALU around the systolic array.

MATMUL streams one scratchpad line per cycle into the array and retires as soon as its
last line is in: its rows drain into the accumulator through a fixed-latency pipeline while
the next PRELOAD or MATMUL already runs (the array double-buffers its weights). LOADACC
and ALU touch accumulator rows a draining MATMUL may still write, so they wait for the
pipeline to empty, and each completes its own writes before the next instruction starts.
A MATMUL pushes its tokens when its last row is written.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.acc_alu import LATENCY as ALU_LATENCY
from gemmstone.hw.acc_alu import AccAlu
from gemmstone.hw.axi import AxiReadSignature
from gemmstone.hw.dispatch import QueueEntry
from gemmstone.hw.dma import DmaReader
from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS, OPCODES
from gemmstone.hw.systolic_array import SystolicArray
from gemmstone.hw.unit_ports import (
    FAULT_ADDRESS_BITS,
    FaultSignature,
    TokenLinkSignature,
    WindowSignature,
    tokens_ready,
)
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.table import AccLoadType

__all__ = ["ComputeUnit"]


class ComputeUnit(wiring.Component):
    """Runs the compute queue in order (see the module docstring for the overlap rules).

    Members
    -------
    queue : In(stream.Signature(QueueEntry))
    prev, next : Out(TokenLinkSignature)
        Tokens with the load and the store unit.
    window : In(WindowSignature)
    spad : scratchpad read port (flipped ReadPort.Signature, lines of ``line_bytes``)
    acc_a, acc_b : accumulator read ports (flipped ReadPort.Signature, rows of ``cols``
        int32); ``acc_a`` must be transparent for ``acc_w``.
    acc_w : accumulator write port (flipped WritePort.Signature)
    axi : Out(AxiReadSignature)
        LOADACC's DMA reads.
    fault : Out(FaultSignature)
    clear, stop : In(1)
    idle, busy, token_wait, dma_wait : Out(1)
        State for dispatch and the performance counters.
    active : Out(1)
        Executing, draining or waiting for DMA transfers (the core may not end a run).
    retired : Out(1)
        Strobe: an instruction finished (a matmul when its last line is in the array).
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        self.config = config
        self.line = data.ArrayLayout(unsigned(8), config.line_bytes)
        self.row = data.ArrayLayout(signed(32), config.cols)
        acc_read = memory.ReadPort.Signature(addr_width=config.acc_addr_bits, shape=self.row)
        super().__init__({
            "queue": In(stream.Signature(QueueEntry)),
            "prev": Out(TokenLinkSignature(config.token_depth)),
            "next": Out(TokenLinkSignature(config.token_depth)),
            "window": In(WindowSignature()),
            "spad": In(memory.ReadPort.Signature(addr_width=config.spad_addr_bits,
                                                 shape=self.line)),
            "acc_a": In(acc_read),
            "acc_b": In(acc_read),
            "acc_w": In(memory.WritePort.Signature(addr_width=config.acc_addr_bits,
                                                   shape=self.row)),
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
        m.submodules.array = array = SystolicArray.from_config(c)
        m.submodules.alu = alu = AccAlu(config=c)
        m.submodules.dma = dma = DmaReader(line_bytes=c.acc_row_bytes,
                                           data_bytes=c.dram_bytes_per_cycle)
        wiring.connect(m, wiring.flipped(self.axi), dma.axi)
        links = {"prev": self.prev, "next": self.next}

        head = HEADER_LAYOUT(self.queue.payload.word)
        entry = Signal(QueueEntry)
        header = HEADER_LAYOUT(entry.word)
        preload = INSTRUCTION_LAYOUTS["preload"](entry.word)
        matmul = INSTRUCTION_LAYOUTS["matmul"](entry.word)
        loadacc = INSTRUCTION_LAYOUTS["loadacc"](entry.word)
        alu_op = INSTRUCTION_LAYOUTS["alu"](entry.word)

        # -- the matmul drain pipeline: pipe[s] describes the row whose scratchpad line was
        # read s + 1 cycles ago. The array takes the line at pipe[0] and returns its row at
        # pipe[latency], when it is written; the old row is read one cycle before.
        depth = 1 + array.latency
        stage = data.StructLayout({"valid": 1, "row": c.acc_addr_bits, "accumulate": 1,
                                   "push_prev": 1, "push_next": 1})
        pipe = [Signal(stage, name=f"pipe{s}") for s in range(depth)]
        issue = Signal(stage)  # what enters stage 0 this cycle
        m.d.sync += [pipe[0].eq(issue)] + [pipe[s].eq(pipe[s - 1]) for s in range(1, depth)]
        draining = Cat(p.valid for p in pipe).any()
        # Promised pushes of matmuls in the pipeline, so a new instruction's room check
        # counts them.
        pending = {side: Signal(range(c.token_depth + 2), name=f"pending_{side}")
                   for side in links}
        m.d.comb += array.inputs.payload.eq(self.spad.data.as_value()[:8 * c.rows])
        m.d.comb += array.inputs.valid.eq(pipe[0].valid)
        read_stage, write_stage = pipe[depth - 2], pipe[depth - 1]
        m.d.comb += [
            self.acc_a.addr.eq(read_stage.row),
            self.acc_a.en.eq(read_stage.valid & read_stage.accumulate),
        ]
        matmul_row = Signal(self.row)
        for j in range(c.cols):
            old = Mux(write_stage.accumulate, self.acc_a.data[j], 0)
            m.d.comb += matmul_row[j].eq(array.outputs.payload[j] + old)
        pushes = {side: Signal(2, name=f"push_{side}") for side in links}
        drained_push = {side: Signal(name=f"drained_push_{side}") for side in links}
        with m.If(write_stage.valid):
            m.d.comb += [self.acc_w.en.eq(1), self.acc_w.addr.eq(write_stage.row),
                         self.acc_w.data.eq(matmul_row)]
            for side in links:
                m.d.comb += drained_push[side].eq(getattr(write_stage, f"push_{side}"))
        for side, link in links.items():
            m.d.comb += link.push.eq(pushes[side] + drained_push[side])

        # -- instruction sequencing -----------------------------------------------------
        count = Signal(13)   # reads issued (lines, beats, rows)
        done = Signal(13)    # rows or beats completed
        have = Signal()      # a preload line is on the scratchpad port, waiting for the array
        last_byte = Signal(FAULT_ADDRESS_BITS)
        element_bytes = Mux(loadacc.type == AccLoadType.INT8, 1, 4)

        def fail(code: ErrorCode, address) -> None:
            m.d.sync += [self.fault.valid.eq(1), self.fault.code.eq(code),
                         self.fault.index.eq(entry.index), self.fault.address.eq(address)]
            m.next = "FAULT"

        def acc_range(first, n):
            return (n != 0) & (first + n > c.acc_rows)

        def finish() -> None:
            for side in links:
                m.d.comb += pushes[side].eq(getattr(header, f"push_{side}"))
            m.d.comb += self.retired.eq(1)
            m.next = "IDLE"

        opcode = {name: Const(value, 4) for name, value in OPCODES.items()}
        with m.FSM() as fsm:
            with m.State("IDLE"):
                needs_drain = ((head.opcode == opcode["loadacc"])
                               | (head.opcode == opcode["alu"]))
                ready = tokens_ready(head, links, pending) & ~(needs_drain & draining)
                m.d.comb += self.idle.eq(~self.queue.valid & ~draining)
                with m.If(self.queue.valid & ~self.stop & ~self.clear):
                    m.d.comb += self.token_wait.eq(~ready)
                    with m.If(ready):
                        m.d.comb += [self.queue.ready.eq(1), self.prev.pop.eq(head.pop_prev),
                                     self.next.pop.eq(head.pop_next)]
                        m.d.sync += [entry.eq(self.queue.payload), count.eq(0), done.eq(0),
                                     have.eq(0)]
                        m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(header.opcode):
                    with m.Case(opcode["preload"]):
                        with m.If((preload.k == 0) | (preload.k > c.rows)):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Elif(preload.spad + preload.k > c.spad_lines):
                            fail(ErrorCode.SPAD_RANGE, preload.spad + preload.k - 1)
                        with m.Else():
                            m.next = "PRELOAD"
                    with m.Case(opcode["matmul"]):
                        with m.If((matmul.n != 0) & (matmul.spad + matmul.n > c.spad_lines)):
                            fail(ErrorCode.SPAD_RANGE, matmul.spad + matmul.n - 1)
                        with m.Elif(acc_range(matmul.acc, matmul.n)):
                            fail(ErrorCode.ACC_RANGE, matmul.acc + matmul.n - 1)
                        with m.Else():
                            m.next = "MATMUL"
                    with m.Case(opcode["loadacc"]):
                        m.d.comb += last_byte.eq(loadacc.dram + (loadacc.n - 1) * loadacc.stride
                                                 + loadacc.len * element_bytes - 1)
                        with m.If((loadacc.len == 0) | (loadacc.len > c.cols)):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Elif(acc_range(loadacc.acc, loadacc.n)):
                            fail(ErrorCode.ACC_RANGE, loadacc.acc + loadacc.n - 1)
                        with m.Elif((loadacc.n != 0) & (last_byte >= self.window.size)):
                            fail(ErrorCode.DMA_WINDOW, last_byte)
                        with m.Else():
                            m.next = "LOADACC_ISSUE"
                    with m.Case(opcode["alu"]):
                        n, dst, src = alu_op.n, alu_op.dst, alu_op.src
                        overlap = (src != dst) & (Mux(src > dst, src - dst, dst - src) < n)
                        with m.If(acc_range(dst, n)):
                            fail(ErrorCode.ACC_RANGE, dst + n - 1)
                        with m.Elif(~alu_op.use_imm & acc_range(src, n)):
                            fail(ErrorCode.ACC_RANGE, src + n - 1)
                        with m.Elif(~alu_op.use_imm & overlap):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Else():
                            m.next = "ALU"

            with m.State("PRELOAD"):
                # The scratchpad port holds a line until the array takes it (en low).
                m.d.comb += self.busy.eq(1)
                taken = have & array.weights.ready
                issuing = (count < preload.k) & (~have | array.weights.ready)
                m.d.comb += [
                    array.weights.valid.eq(have),
                    array.weights.payload.data.eq(self.spad.data.as_value()[:8 * c.cols]),
                    array.weights.payload.last.eq(done == preload.k - 1),
                    self.spad.en.eq(issuing),
                    self.spad.addr.eq(preload.spad + count),
                ]
                m.d.sync += have.eq(issuing | (have & ~array.weights.ready))
                with m.If(issuing):
                    m.d.sync += count.eq(count + 1)
                with m.If(taken):
                    m.d.sync += done.eq(done + 1)
                    with m.If(done == preload.k - 1):
                        finish()

            with m.State("MATMUL"):
                m.d.comb += self.busy.eq(1)
                with m.If(count < matmul.n):
                    last = count == matmul.n - 1
                    m.d.comb += [
                        self.spad.en.eq(1),
                        self.spad.addr.eq(matmul.spad + count),
                        issue.valid.eq(1),
                        issue.row.eq(matmul.acc + count),
                        issue.accumulate.eq(matmul.accumulate),
                        issue.push_prev.eq(last & header.push_prev),
                        issue.push_next.eq(last & header.push_next),
                    ]
                    m.d.sync += count.eq(count + 1)
                    with m.If(last):
                        m.d.comb += self.retired.eq(1)
                        m.next = "IDLE"
                with m.Else():  # n == 0: nothing to stream, tokens still move
                    finish()

            with m.State("LOADACC_ISSUE"):
                m.d.comb += [
                    self.busy.eq(1),
                    dma.cmd.valid.eq(loadacc.n != 0),
                    dma.cmd.payload.addr.eq(self.window.base + loadacc.dram),
                    dma.cmd.payload.stride.eq(loadacc.stride),
                    dma.cmd.payload.n.eq(loadacc.n),
                    dma.cmd.payload.len.eq(loadacc.len * element_bytes),
                ]
                with m.If(loadacc.n == 0):
                    finish()
                with m.Elif(dma.cmd.ready):
                    m.next = "LOADACC"

            with m.State("LOADACC"):
                # Line i is read from the accumulator as it arrives and written back,
                # added to the old row, one cycle later; with overwrite the old row is 0.
                m.d.comb += self.busy.eq(1)
                incoming = Signal(self.row)
                line = dma.lines.payload.data
                for j in range(c.cols):
                    as_int8 = line[j].as_signed()
                    as_int32 = Cat(line[4 * j], line[4 * j + 1], line[4 * j + 2],
                                   line[4 * j + 3]).as_signed()
                    m.d.comb += incoming[j].eq(Mux(loadacc.type == AccLoadType.INT8,
                                                   as_int8, as_int32))
                staged = Signal(self.row)
                staged_valid = Signal()
                accepting = count < loadacc.n
                m.d.comb += [
                    dma.lines.ready.eq(accepting),
                    self.dma_wait.eq(accepting & ~dma.lines.valid),
                    self.acc_b.en.eq(1),
                    self.acc_b.addr.eq(loadacc.acc + count),
                ]
                m.d.sync += [staged.eq(incoming), staged_valid.eq(accepting & dma.lines.valid)]
                with m.If(accepting & dma.lines.valid):
                    m.d.sync += count.eq(count + 1)
                with m.If(staged_valid):
                    written = Signal(self.row)
                    for j in range(c.cols):
                        old = Mux(loadacc.accumulate, self.acc_b.data[j], 0)
                        m.d.comb += written[j].eq(staged[j] + old)
                    m.d.comb += [self.acc_w.en.eq(1), self.acc_w.addr.eq(loadacc.acc + done),
                                 self.acc_w.data.eq(written)]
                    m.d.sync += done.eq(done + 1)
                    with m.If(done == loadacc.n - 1):
                        finish()

            with m.State("ALU"):
                m.d.comb += self.busy.eq(1)
                with m.If(alu_op.n == 0):
                    finish()
                reading = count < alu_op.n
                fed = Signal()
                m.d.sync += fed.eq(reading)
                m.d.comb += [
                    self.acc_a.en.eq(reading), self.acc_a.addr.eq(alu_op.dst + count),
                    self.acc_b.en.eq(reading), self.acc_b.addr.eq(alu_op.src + count),
                    alu.func.eq(alu_op.func), alu.shift.eq(alu_op.shift),
                    alu.i.valid.eq(fed), alu.o.ready.eq(1),
                ]
                for j in range(c.cols):
                    m.d.comb += [alu.i.payload.d[j].eq(self.acc_a.data[j]),
                                 alu.i.payload.b[j].eq(Mux(alu_op.use_imm, alu_op.imm,
                                                           self.acc_b.data[j]))]
                with m.If(reading):
                    m.d.sync += count.eq(count + 1)
                with m.If(alu.o.valid):
                    m.d.comb += [self.acc_w.en.eq(1), self.acc_w.addr.eq(alu_op.dst + done),
                                 self.acc_w.data.eq(alu.o.payload)]
                    m.d.sync += done.eq(done + 1)
                    with m.If(done == alu_op.n - 1):
                        finish()

            with m.State("FAULT"), m.If(self.clear):
                m.d.sync += self.fault.valid.eq(0)
                m.next = "IDLE"

        # Pushes promised by matmuls in the pipeline (counted from their start).
        with m.If(self.clear):
            m.d.sync += [pending[side].eq(0) for side in links]
        with m.Else():
            for side in links:
                starts = issue.valid & getattr(issue, f"push_{side}")
                m.d.sync += pending[side].eq(pending[side] + starts - drained_push[side])
        assert ALU_LATENCY == 2  # the ALU state's bookkeeping assumes nothing else
        m.d.comb += self.active.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("FAULT")
                                   | draining | dma.busy)
        return m
