"""The compute unit: executes PRELOAD, MATMUL, LOADACC and ALU around the systolic array.

MATMUL streams one scratchpad line per cycle into the array and retires as soon as its
last line is in: its rows drain into the accumulator through a fixed-latency pipeline while
the next instructions already run. PRELOAD runs in its own weight loader, on its own
scratchpad read port: it may start while the previous MATMUL still streams (the array
double-buffers its weights), and holds back its last weight row, which switches the array
to the new weights, until that MATMUL's last line is in. A MATMUL waits for the loader to
finish. LOADACC and ALU touch accumulator rows a draining MATMUL may still write, so they
wait for the pipeline to empty, and each completes its own writes before the next
instruction starts. A MATMUL pushes its tokens when its last row is written. Tokens are
counted, not named, so no instruction may push to the store unit before the rows of
earlier MATMULs are written: a PRELOAD that pushes there holds back its last weight row,
and a MATMUL with n = 0 waits, until the pipeline is empty.
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
    tokens_ready,
    unit_members,
)
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.table import AccLoadType

__all__ = ["ComputeUnit"]


class ComputeUnit(wiring.Component):
    """Runs the compute queue in order (see the module docstring for the overlap rules).

    Members
    -------
    spad, spad_w : scratchpad read ports (flipped ReadPort.Signature, lines of
        ``line_bytes``): input rows of MATMUL, weight rows of PRELOAD
    acc_add : Out(stream.Signature(StructLayout(addr, data, accumulate), always_ready))
        The accumulator's add-in-place port: MATMUL rows and LOADACC lines, written (or
        added to the old row) one cycle after the transfer.
    acc_a, acc_b : accumulator read ports (flipped ReadPort.Signature, rows of ``cols``
        int32), transparent for the writes: the ALU's operands.
    acc_w : accumulator write port (flipped WritePort.Signature): the ALU's results.
    axi : Out(AxiReadSignature)
        LOADACC's DMA reads.
    queue, window, fault, clear, stop, idle, active, retired, busy, token_wait, dma_wait
        and the token links: see `unit_members`.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        self.config = config
        self.line = data.ArrayLayout(unsigned(8), config.line_bytes)
        self.row = data.ArrayLayout(signed(32), config.cols)
        acc_read = memory.ReadPort.Signature(addr_width=config.acc_addr_bits, shape=self.row)
        spad_read = memory.ReadPort.Signature(addr_width=config.spad_addr_bits, shape=self.line)
        super().__init__({
            "spad": In(spad_read),
            "spad_w": In(spad_read),
            "acc_add": Out(stream.Signature(data.StructLayout({
                "addr": config.acc_addr_bits, "data": self.row, "accumulate": 1,
            }), always_ready=True)),
            "acc_a": In(acc_read),
            "acc_b": In(acc_read),
            "acc_w": In(memory.WritePort.Signature(addr_width=config.acc_addr_bits,
                                                   shape=self.row)),
            "axi": Out(AxiReadSignature(data_bytes=config.dram_bytes_per_cycle)),
            **unit_members(config, sides=("prev", "next")),
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
        head_preload = INSTRUCTION_LAYOUTS["preload"](self.queue.payload.word)
        head_matmul = INSTRUCTION_LAYOUTS["matmul"](self.queue.payload.word)
        entry = Signal(QueueEntry)
        header = HEADER_LAYOUT(entry.word)
        preload = INSTRUCTION_LAYOUTS["preload"](entry.word)
        matmul = INSTRUCTION_LAYOUTS["matmul"](entry.word)
        loadacc = INSTRUCTION_LAYOUTS["loadacc"](entry.word)
        alu_op = INSTRUCTION_LAYOUTS["alu"](entry.word)

        # -- the matmul drain pipeline: pipe[s] describes the row whose scratchpad line was
        # read s + 1 cycles ago. The array takes the line at pipe[0] and returns its row at
        # pipe[latency], when it goes to the accumulator's adder; pipe[latency + 1] is the
        # cycle the adder writes it, when the matmul's tokens are pushed.
        depth = 2 + array.latency
        stage = data.StructLayout({"valid": 1, "row": c.acc_addr_bits, "accumulate": 1,
                                   "push_prev": 1, "push_next": 1})
        pipe = [Signal(stage, name=f"pipe{s}") for s in range(depth)]
        issue = Signal(stage)  # what enters stage 0 this cycle
        m.d.sync += [pipe[0].eq(issue)] + [pipe[s].eq(pipe[s - 1]) for s in range(1, depth)]
        adding = Signal()  # the accumulator's adder writes a row this cycle
        m.d.sync += adding.eq(self.acc_add.valid)
        draining = Cat(*(p.valid for p in pipe), adding).any()
        # Promised pushes of matmuls in the pipeline, so a new instruction's room check
        # counts them.
        pending = {side: Signal(range(c.token_depth + 2), name=f"pending_{side}")
                   for side in links}
        m.d.comb += array.inputs.payload.eq(self.spad.data.as_value()[:8 * c.rows])
        m.d.comb += array.inputs.valid.eq(pipe[0].valid)
        output_stage, committed = pipe[depth - 2], pipe[depth - 1]
        pushes = {side: Signal(2, name=f"push_{side}") for side in links}
        drained_push = {side: Signal(name=f"drained_push_{side}") for side in links}
        with m.If(output_stage.valid):
            m.d.comb += [self.acc_add.valid.eq(1), self.acc_add.payload.addr.eq(output_stage.row),
                         self.acc_add.payload.data.eq(array.outputs.payload),
                         self.acc_add.payload.accumulate.eq(output_stage.accumulate)]
        with m.If(committed.valid):
            for side in links:
                m.d.comb += drained_push[side].eq(getattr(committed, f"push_{side}"))
        loader_push = {side: Signal(name=f"loader_push_{side}") for side in links}
        for side, link in links.items():
            m.d.comb += link.push.eq(pushes[side] + drained_push[side] + loader_push[side])

        # -- the weight loader (PRELOAD) -------------------------------------------------
        loading = Signal()                  # a preload is in the loader
        loader_word = Signal(QueueEntry)
        loader = INSTRUCTION_LAYOUTS["preload"](loader_word.word)
        loader_header = HEADER_LAYOUT(loader_word.word)
        loader_count = Signal(8)            # weight rows read
        loader_done = Signal(8)             # weight rows taken by the array
        loader_have = Signal()              # a row is on spad_w, waiting for the array
        streaming = Signal()                # the FSM is streaming a matmul's lines
        fsm_busy = Signal()                 # the FSM executes an instruction
        final_row = loader_done == loader.k - 1
        # The final row retires the preload: when it pushes to the store unit, rows of
        # earlier matmuls must be in the accumulator first, so it waits for the drain.
        offered = loader_have & ~(final_row & (streaming
                                               | (draining & loader_header.push_next)))
        taken = offered & array.weights.ready
        reading = loading & (loader_count < loader.k) & (~loader_have | taken)
        m.d.comb += [
            array.weights.valid.eq(loading & offered),
            array.weights.payload.data.eq(self.spad_w.data.as_value()[:8 * c.cols]),
            array.weights.payload.last.eq(final_row),
            self.spad_w.en.eq(reading),
            self.spad_w.addr.eq(loader.spad + loader_count),
        ]
        m.d.sync += loader_have.eq(reading | (loader_have & ~taken))
        with m.If(reading):
            m.d.sync += loader_count.eq(loader_count + 1)
        with m.If(loading & taken):
            m.d.sync += loader_done.eq(loader_done + 1)
            with m.If(final_row):
                m.d.sync += loading.eq(0)
                m.d.comb += self.retired.eq(1)
                for side in links:
                    m.d.comb += loader_push[side].eq(getattr(loader_header, f"push_{side}"))
        # Pushes the loader will make count against the room a new instruction needs.
        promised = {side: pending[side] + (loading & getattr(loader_header, f"push_{side}"))
                    for side in links}
        preload_ok = ((head_preload.k != 0) & (head_preload.k <= c.rows)
                      & (head_preload.spad + head_preload.k <= c.spad_lines))
        matmul_ok = (head_matmul.n == 0) | (
            (head_matmul.spad + head_matmul.n <= c.spad_lines)
            & (head_matmul.acc + head_matmul.n <= c.acc_rows))
        head_ready = self.queue.valid & ~self.stop & ~self.clear & tokens_ready(head, links,
                                                                                  promised)

        def take_into_loader() -> None:
            m.d.comb += [self.queue.ready.eq(1), self.prev.pop.eq(head.pop_prev),
                         self.next.pop.eq(head.pop_next)]
            m.d.sync += [loading.eq(1), loader_word.eq(self.queue.payload),
                         loader_count.eq(0), loader_done.eq(0), loader_have.eq(0)]

        # -- instruction sequencing -----------------------------------------------------
        count = Signal(13)   # reads issued (lines, beats, rows)
        done = Signal(13)    # rows or beats completed
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
                is_preload = head.opcode == opcode["preload"]
                is_matmul = head.opcode == opcode["matmul"]
                # A matmul with n = 0 retires at once: its pushes must not overtake the
                # rows of earlier matmuls.
                needs_drain = ((head.opcode == opcode["loadacc"])
                               | (head.opcode == opcode["alu"])
                               | (is_matmul & (head_matmul.n == 0)))
                # Any instruction but a checked-good preload waits for the loader; loadacc
                # and alu also wait for the matmul pipeline to drain.
                blocked = loading | (needs_drain & draining)
                m.d.comb += [
                    self.idle.eq(~self.queue.valid & ~draining & ~loading),
                    self.token_wait.eq(self.queue.valid & ~self.stop & ~self.clear
                                       & ~tokens_ready(head, links, promised)),
                ]
                with m.If(head_ready & is_preload & preload_ok), m.If(~loading):
                    take_into_loader()
                with m.Elif(head_ready & ~blocked):
                    m.d.comb += [self.queue.ready.eq(1), self.prev.pop.eq(head.pop_prev),
                                 self.next.pop.eq(head.pop_next)]
                    m.d.sync += [entry.eq(self.queue.payload), count.eq(0), done.eq(0)]
                    # A good matmul streams at once; everything else is checked first.
                    with m.If(is_matmul & matmul_ok):
                        m.next = "MATMUL"
                    with m.Else():
                        m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += fsm_busy.eq(1)
                with m.Switch(header.opcode):
                    with m.Case(opcode["preload"]):
                        with m.If((preload.k == 0) | (preload.k > c.rows)):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Else():  # only preloads that fail their checks come here
                            fail(ErrorCode.SPAD_RANGE, preload.spad + preload.k - 1)
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

            with m.State("MATMUL"):
                m.d.comb += fsm_busy.eq(1)
                # The next preload may start now; its last row waits for this matmul.
                with m.If(head_ready & (head.opcode == opcode["preload"]) & preload_ok
                          & ~loading):
                    take_into_loader()
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
                    fsm_busy.eq(1),
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
                # Each line goes to the accumulator's adder as it arrives (added to the old
                # row, or written over it); the adder writes it the next cycle.
                m.d.comb += fsm_busy.eq(1)
                incoming = Signal(self.row)
                line = dma.lines.payload.data
                for j in range(c.cols):
                    as_int8 = line[j].as_signed()
                    as_int32 = Cat(line[4 * j], line[4 * j + 1], line[4 * j + 2],
                                   line[4 * j + 3]).as_signed()
                    m.d.comb += incoming[j].eq(Mux(loadacc.type == AccLoadType.INT8,
                                                   as_int8, as_int32))
                accepting = count < loadacc.n
                arriving = accepting & dma.lines.valid
                m.d.comb += [
                    dma.lines.ready.eq(accepting),
                    self.dma_wait.eq(accepting & ~dma.lines.valid),
                    self.acc_add.valid.eq(arriving),
                    self.acc_add.payload.addr.eq(loadacc.acc + count),
                    self.acc_add.payload.data.eq(incoming),
                    self.acc_add.payload.accumulate.eq(loadacc.accumulate),
                ]
                with m.If(arriving):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == loadacc.n - 1):
                        finish()

            with m.State("ALU"):
                m.d.comb += fsm_busy.eq(1)
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
        m.d.comb += [
            streaming.eq(fsm.ongoing("MATMUL")),
            self.busy.eq(fsm_busy | loading),
            self.active.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("FAULT")
                           | draining | loading | dma.busy),
        ]
        return m
