"""Dispatch: decode and check each fetched word, route it to its unit's queue, run fence and
halt. Every check is generated from the ISA table, so the RTL rejects exactly the words
``gemmstone.isa.decode`` rejects."""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS, reserved_mask
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.table import INSTRUCTIONS, WORD_BITS, Unit

__all__ = ["Dispatch", "QueueEntry", "INDEX_BITS"]

INDEX_BITS = 32  # instruction index, as in the error-index register

QueueEntry = data.StructLayout({"word": WORD_BITS, "index": INDEX_BITS})


def _legal(m: Module, word) -> Signal:
    """1 when ``word`` decodes: known opcode, reserved bits zero, enum values defined and
    token flags only towards neighbours the unit has."""
    legal = Signal()
    header = HEADER_LAYOUT(word)
    with m.Switch(header.opcode):
        for spec in INSTRUCTIONS:
            with m.Case(spec.opcode):
                view = INSTRUCTION_LAYOUTS[spec.mnemonic](word)
                checks = [(word & reserved_mask(spec.mnemonic)) == 0]
                for f in spec.operands:
                    if f.is_enum:
                        checks.append(Cat(getattr(view, f.name) == int(v)
                                          for v in f.kind).any())
                if not spec.unit.has_prev:
                    checks += [~header.pop_prev, ~header.push_prev]
                if not spec.unit.has_next:
                    checks += [~header.pop_next, ~header.push_next]
                m.d.comb += legal.eq(Cat(*checks).all())
        with m.Default():
            m.d.comb += legal.eq(0)
    return legal


class Dispatch(wiring.Component):
    """In-order dispatcher.

    Members
    -------
    start : In(1)
        Pulse: begin a program of ``length`` words at index 0.
    length : In(INDEX_BITS)
    words : In(stream.Signature(WORD_BITS))
        Fetched words, in program order.
    load, compute, store : Out(stream.Signature(QueueEntry))
        To the units' instruction queues.
    idle : In(1)
        Every queue empty and every unit idle (fence and halt wait for it).
    tokens_zero : In(1)
        No token left in any queue (halt checks it).
    stop : In(1)
        A fault elsewhere: stop dispatching at once.
    busy, done : Out(1)
        Running; reached halt cleanly.
    error : Out(1)
    error_code : Out(ErrorCode width)
    error_index : Out(INDEX_BITS)
    index : Out(INDEX_BITS)
        Index of the next word to dispatch.
    """

    def __init__(self) -> None:
        super().__init__({
            "start": In(1),
            "length": In(INDEX_BITS),
            "words": In(stream.Signature(WORD_BITS)),
            "load": Out(stream.Signature(QueueEntry)),
            "compute": Out(stream.Signature(QueueEntry)),
            "store": Out(stream.Signature(QueueEntry)),
            "idle": In(1),
            "tokens_zero": In(1),
            "stop": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(unsigned(max(ErrorCode).bit_length())),
            "error_index": Out(INDEX_BITS),
            "index": Out(INDEX_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        word = self.words.payload
        header = HEADER_LAYOUT(word)
        legal = _legal(m, word)
        queues = {Unit.LOAD: self.load, Unit.COMPUTE: self.compute, Unit.STORE: self.store}
        for queue in queues.values():
            m.d.comb += [queue.payload.word.eq(word), queue.payload.index.eq(self.index)]

        def fail(code: ErrorCode, index) -> None:
            m.d.sync += [self.error_code.eq(code), self.error_index.eq(index)]
            m.next = "ERROR"

        def startable() -> None:
            with m.If(self.start):
                m.d.sync += [self.index.eq(0), self.error_code.eq(ErrorCode.NONE),
                             self.error_index.eq(0)]
                m.next = "RUN"

        with m.FSM(name="dispatch") as fsm:
            with m.State("IDLE"):
                startable()
            with m.State("RUN"):
                with m.If(self.stop):
                    m.next = "ERROR"
                with m.Elif(self.index == self.length):
                    m.next = "END"
                with m.Elif(self.words.valid & ~legal):
                    fail(ErrorCode.ILLEGAL_INSTRUCTION, self.index)
                with m.Elif(self.words.valid):
                    with m.Switch(header.opcode):
                        for spec in INSTRUCTIONS:
                            with m.Case(spec.opcode):
                                if spec.unit is Unit.DISPATCH:
                                    m.d.comb += self.words.ready.eq(1)
                                    m.next = "FENCE" if spec.mnemonic == "fence" else "HALT"
                                else:
                                    queue = queues[spec.unit]
                                    m.d.comb += [queue.valid.eq(1),
                                                 self.words.ready.eq(queue.ready)]
                    with m.If(self.words.ready):
                        m.d.sync += self.index.eq(self.index + 1)
            with m.State("FENCE"):
                with m.If(self.stop):
                    m.next = "ERROR"
                with m.Elif(self.idle):
                    m.next = "RUN"
            with m.State("HALT"):
                with m.If(self.stop):
                    m.next = "ERROR"
                with m.Elif(self.idle & self.tokens_zero):
                    m.next = "DONE"
                with m.Elif(self.idle):
                    fail(ErrorCode.TOKEN, self.index - 1)
            with m.State("END"):
                with m.If(self.stop):
                    m.next = "ERROR"
                with m.Elif(self.idle):
                    fail(ErrorCode.PROGRAM_END, self.index)
            with m.State("DONE"):
                startable()
            with m.State("ERROR"):
                startable()
        m.d.comb += [
            self.busy.eq(fsm.ongoing("RUN") | fsm.ongoing("FENCE") | fsm.ongoing("HALT")
                         | fsm.ongoing("END")),
            self.done.eq(fsm.ongoing("DONE")),
            self.error.eq(fsm.ongoing("ERROR")),
        ]
        return m
