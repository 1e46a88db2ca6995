"""The accumulator ALU: element-wise functions on accumulator rows (ALU instruction).

Bit-exact with the functional model's ``alu`` handler, one row per cycle, two stages
(the second holds MULSHR's 64-bit product).
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.table import AluFunc

__all__ = ["AccAlu", "LATENCY"]

LATENCY = 2

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _sat32(value):
    return Mux(value > _INT32_MAX, _INT32_MAX, Mux(value < _INT32_MIN, _INT32_MIN, value))


def _round_shift(value, amount):
    """Arithmetic shift right, rounding half up: bit (s - 1) of v is bit s of v << 1."""
    return (value >> amount) + ((value << 1) >> amount)[0]


class AccAlu(wiring.Component):
    """``d = func(d, b)`` on rows of ``cols`` int32 elements.

    ``func`` and ``shift`` must stay constant while rows of one instruction are in flight.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    i : In(stream.Signature(StructLayout(d=row, b=row)))
        Operand rows (``b`` is the immediate broadcast when the instruction uses one).
    o : Out(stream.Signature(row))
    func : In(AluFunc as a 3-bit value)
    shift : In(unsigned(6))
        MULSHR's right shift.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        self.config = config
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"d": row, "b": row}))),
            "o": Out(stream.Signature(row)),
            "func": In(unsigned(max(f.value for f in AluFunc).bit_length())),
            "shift": In(unsigned(6)),
        })

    def elaborate(self, platform):
        m = Module()
        valid = [Signal(name=f"valid{stage}") for stage in range(1, LATENCY + 1)]
        advance = ~valid[-1] | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), self.o.valid.eq(valid[-1])]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), valid[1].eq(valid[0])]

        for j in range(self.config.cols):
            d, b = self.i.payload.d[j], self.i.payload.b[j]
            amount = b[:5]  # the shift functions use b & 31
            simple = Signal(signed(32), name=f"simple{j}")  # every function but MULSHR
            with m.Switch(self.func):
                for func, value in (
                    (AluFunc.ADD, _sat32(d + b)),
                    (AluFunc.SUB, _sat32(d - b)),
                    (AluFunc.MAX, Mux(d > b, d, b)),
                    (AluFunc.MIN, Mux(d < b, d, b)),
                    (AluFunc.SHR, _round_shift(d, amount)),
                    (AluFunc.SHL, _sat32(d << amount)),
                    (AluFunc.MOV, b),
                ):
                    with m.Case(func):
                        m.d.comb += simple.eq(value)
            # Stage 1 registers the simple result and MULSHR's product; stage 2 picks.
            simple_r = Signal(signed(32), name=f"simple_r{j}")
            product_r = Signal(signed(64), name=f"product_r{j}")
            with m.If(advance):
                m.d.sync += [
                    simple_r.eq(simple),
                    product_r.eq(d * b),
                    self.o.payload[j].eq(Mux(self.func == AluFunc.MULSHR,
                                             _sat32(_round_shift(product_r, self.shift)),
                                             simple_r)),
                ]
        return m
