"""The store unit: executes LOADQ, CONFIG and STORE (accumulator -> output stage -> DRAM).

A STORE without tokens to push retires once its last accumulator row has been read: the
rows are then on their way through the output stage and the DMA writer, and the next STORE
may start. A STORE that pushes retires, and pushes, only once every write of the output
path has been acknowledged: a token says the store is complete, and its consumer (or a
unit it passes the order on to) may read the bytes it wrote. LOADQ and CONFIG change the
output stage's parameters, and a STORE of the other mode switches the output path, so they
wait until every row of earlier STOREs has been written; the unit is idle (for fence and
halt) only when every write response has come back.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.axi import AxiSignature
from gemmstone.hw.dispatch import QueueEntry
from gemmstone.hw.dma import DmaReader, DmaWriter
from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS, OPCODES
from gemmstone.hw.output_stage import OutputStage
from gemmstone.hw.unit_ports import (
    FAULT_ADDRESS_BITS,
    tokens_ready,
    unit_members,
)
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.table import StoreMode

__all__ = ["StoreUnit"]


class StoreUnit(wiring.Component):
    """Runs the store queue in order.

    Members
    -------
    acc : accumulator read port (flipped ReadPort.Signature)
    axi : Out(AxiSignature)
        LOADQ's reads and STORE's writes.
    queue, window, fault, clear, stop, idle, active, retired, busy, token_wait, dma_wait
        and the token links: see `unit_members`.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        self.config = config
        self.row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            "acc": In(memory.ReadPort.Signature(addr_width=config.acc_addr_bits,
                                                shape=self.row)),
            "axi": Out(AxiSignature(data_bytes=config.dram_bytes_per_cycle)),
            **unit_members(config, sides=("prev",)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        cols = c.cols
        m.submodules.reader = reader = DmaReader(line_bytes=c.acc_row_bytes,
                                                 data_bytes=c.dram_bytes_per_cycle)
        m.submodules.writer = writer = DmaWriter(line_bytes=c.acc_row_bytes,
                                                 data_bytes=c.dram_bytes_per_cycle)
        m.submodules.stage = stage = OutputStage(config=c)
        self._connect_axi(m, reader, writer)
        links = {"prev": self.prev}

        head = HEADER_LAYOUT(self.queue.payload.word)
        head_store = INSTRUCTION_LAYOUTS["store"](self.queue.payload.word)
        entry = Signal(QueueEntry)
        header = HEADER_LAYOUT(entry.word)
        store = INSTRUCTION_LAYOUTS["store"](entry.word)
        loadq = INSTRUCTION_LAYOUTS["loadq"](entry.word)
        config = INSTRUCTION_LAYOUTS["config"](entry.word)

        # Output-stage parameters; reset values as the functional model's.
        bias = Signal(data.ArrayLayout(signed(32), cols))
        mult = Signal(data.ArrayLayout(signed(32), cols))
        shift = Signal(data.ArrayLayout(unsigned(6), cols))
        zp, lo, hi = Signal(signed(8)), Signal(signed(8), init=-128), Signal(signed(8), init=127)
        m.d.comb += [stage.bias.eq(bias), stage.mult.eq(mult), stage.shift.eq(shift),
                     stage.zp.eq(zp), stage.lo.eq(lo), stage.hi.eq(hi)]

        count = Signal(13)  # rows read (STORE) or lines taken (LOADQ)
        have = Signal()     # a row is on the accumulator port, waiting to be taken
        in_flight = Signal(range(4096 * 4))  # rows read but not yet handed to the writer
        last_byte = Signal(FAULT_ADDRESS_BITS)
        raw = store.mode == StoreMode.INT32
        path_raw = Signal()  # mode of the last STORE started: its rows may be in the path
        element_bytes = Mux(raw, 4, 1)

        # Rows into the output path: straight to the writer (int32) or through the stage.
        row_valid, row_ready = Signal(), Signal()
        line = Signal(data.ArrayLayout(unsigned(8), c.acc_row_bytes))
        with m.If(raw):
            m.d.comb += [writer.lines.valid.eq(row_valid), row_ready.eq(writer.lines.ready),
                         line.eq(self.acc.data.as_value())]
        with m.Else():
            m.d.comb += [stage.i.valid.eq(row_valid), row_ready.eq(stage.i.ready),
                         stage.i.payload.eq(self.acc.data),
                         writer.lines.valid.eq(stage.o.valid), stage.o.ready.eq(writer.lines.ready),
                         line.eq(stage.o.payload.as_value())]
        m.d.comb += writer.lines.payload.data.eq(line)
        handed = writer.lines.valid & writer.lines.ready
        took = row_valid & row_ready
        m.d.sync += in_flight.eq(in_flight + took - handed)
        output_empty = (in_flight == 0) & ~writer.busy

        def fail(code: ErrorCode, address) -> None:
            m.d.sync += [self.fault.valid.eq(1), self.fault.code.eq(code),
                         self.fault.index.eq(entry.index), self.fault.address.eq(address)]
            m.next = "FAULT"

        def finish() -> None:
            m.d.comb += [self.prev.push.eq(header.push_prev), self.retired.eq(1)]
            m.next = "IDLE"

        def finish_store() -> None:
            with m.If(header.push_prev):
                m.next = "STORE_WRITTEN"
            with m.Else():
                finish()

        with m.FSM() as fsm:
            with m.State("IDLE"):
                changes_stage = ((head.opcode == OPCODES["loadq"])
                                 | (head.opcode == OPCODES["config"]))
                # The output path is chosen by the running STORE's mode: rows of an earlier
                # STORE of the other mode must have left it first.
                switches_path = ((head.opcode == OPCODES["store"])
                                 & ((head_store.mode == StoreMode.INT32) != path_raw))
                ready = tokens_ready(head, links) & ~((changes_stage | switches_path)
                                                      & ~output_empty)
                m.d.comb += self.idle.eq(~self.queue.valid & output_empty)
                with m.If(self.queue.valid & ~self.stop & ~self.clear):
                    m.d.comb += self.token_wait.eq(~ready)
                    with m.If(ready):
                        m.d.comb += [self.queue.ready.eq(1), self.prev.pop.eq(head.pop_prev)]
                        m.d.sync += [entry.eq(self.queue.payload), count.eq(0), have.eq(0)]
                        with m.If(head.opcode == OPCODES["store"]):
                            m.d.sync += path_raw.eq(head_store.mode == StoreMode.INT32)
                        m.next = "CHECK"

            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(header.opcode):
                    with m.Case(OPCODES["store"]):
                        m.d.comb += last_byte.eq(store.dram + (store.n - 1) * store.stride
                                                 + store.len * element_bytes - 1)
                        with m.If((store.len == 0) | (store.len > cols)):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Elif((store.n != 0) & (store.acc + store.n > c.acc_rows)):
                            fail(ErrorCode.ACC_RANGE, store.acc + store.n - 1)
                        with m.Elif((store.n != 0) & (last_byte >= self.window.size)):
                            fail(ErrorCode.DMA_WINDOW, last_byte)
                        with m.Else():
                            m.next = "STORE_ISSUE"
                    with m.Case(OPCODES["loadq"]):
                        m.d.comb += last_byte.eq(loadq.dram + 12 * loadq.len - 1)
                        with m.If((loadq.len == 0) | (loadq.len > cols)):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Elif(last_byte >= self.window.size):
                            fail(ErrorCode.DMA_WINDOW, last_byte)
                        with m.Else():
                            m.next = "LOADQ_ISSUE"
                    with m.Case(OPCODES["config"]):
                        with m.If(config.lo > config.hi):
                            fail(ErrorCode.OPERAND, 0)
                        with m.Else():
                            m.d.sync += [zp.eq(config.zp), lo.eq(config.lo), hi.eq(config.hi)]
                            finish()

            with m.State("STORE_ISSUE"):
                m.d.comb += [
                    self.busy.eq(1),
                    writer.cmd.valid.eq(store.n != 0),
                    writer.cmd.payload.addr.eq(self.window.base + store.dram),
                    writer.cmd.payload.stride.eq(store.stride),
                    writer.cmd.payload.n.eq(store.n),
                    writer.cmd.payload.len.eq(store.len * element_bytes),
                ]
                with m.If(store.n == 0):
                    finish_store()
                with m.Elif(writer.cmd.ready):
                    m.next = "STORE"

            with m.State("STORE"):
                # The accumulator port holds a row until the output path takes it.
                m.d.comb += self.busy.eq(1)
                issuing = (count < store.n) & (~have | row_ready)
                m.d.comb += [row_valid.eq(have), self.acc.en.eq(issuing),
                             self.acc.addr.eq(store.acc + count)]
                m.d.sync += have.eq(issuing | (have & ~row_ready))
                with m.If(issuing):
                    m.d.sync += count.eq(count + 1)
                with m.If((count == store.n) & took):
                    finish_store()

            with m.State("STORE_WRITTEN"):
                # Wait until this and every earlier STORE's writes are acknowledged.
                m.d.comb += self.busy.eq(1)
                with m.If(output_empty):
                    finish()

            with m.State("LOADQ_ISSUE"):
                m.d.comb += [
                    self.busy.eq(1),
                    reader.cmd.valid.eq(1),
                    reader.cmd.payload.addr.eq(self.window.base + loadq.dram),
                    reader.cmd.payload.stride.eq(4 * loadq.len),
                    reader.cmd.payload.n.eq(3),
                    reader.cmd.payload.len.eq(4 * loadq.len),
                ]
                with m.If(reader.cmd.ready):
                    m.next = "LOADQ"

            with m.State("LOADQ"):
                # Lines 0, 1, 2 hold bias, mult and shift; bytes past 4*len arrive as zeros.
                m.d.comb += [self.busy.eq(1), reader.lines.ready.eq(1),
                             self.dma_wait.eq(~reader.lines.valid)]
                words = reader.lines.payload.data
                with m.If(reader.lines.valid):
                    m.d.sync += count.eq(count + 1)
                    for j in range(cols):
                        word = Cat(words[4 * j], words[4 * j + 1], words[4 * j + 2],
                                   words[4 * j + 3])
                        with m.Switch(count):
                            with m.Case(0):
                                m.d.sync += bias[j].eq(word)
                            with m.Case(1):
                                m.d.sync += mult[j].eq(word)
                            with m.Case(2):
                                m.d.sync += shift[j].eq(word[:6])
                    with m.If(count == 2):
                        finish()

            with m.State("FAULT"), m.If(self.clear):
                m.d.sync += self.fault.valid.eq(0)
                m.next = "IDLE"
        m.d.comb += self.active.eq(~fsm.ongoing("IDLE") & ~fsm.ongoing("FAULT")
                                   | ~output_empty | reader.busy)
        return m

    def _connect_axi(self, m: Module, reader: DmaReader, writer: DmaWriter) -> None:
        """The unit's one AXI port: read channels from the reader, write from the writer."""
        for name, member in self.axi.signature.members.items():
            source = reader.axi if hasattr(reader.axi, name) else writer.axi
            ours, theirs = getattr(self.axi, name), getattr(source, name)
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
