"""The STORE output stage: bias, per-column requantization, zero point and clamp.

Bit-exact with ``gemmstone.sim.functional.requantize`` (the ISA's definition), one
accumulator row per cycle, four pipeline stages.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig

__all__ = ["OutputStage", "LATENCY"]

LATENCY = 4  # registered stages from an accepted input row to its output row

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


class OutputStage(wiring.Component):
    """Requantize rows of ``cols`` int32 accumulators to int8.

    Per column j: ``x = sat32(acc + bias[j])``, ``p = x * mult[j]`` (64-bit),
    ``y = p >> s`` rounded half up (``s = shift[j]``), ``out = clamp(y + zp, lo, hi)``.
    The parameters must stay constant while rows are in flight (the store unit drains the
    stage before LOADQ or CONFIG change them).

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(32), cols)))
        Accumulator rows.
    o : Out(stream.Signature(ArrayLayout(signed(8), cols)))
        Requantized rows, in order.
    bias, mult : In(ArrayLayout(signed(32), cols))
    shift : In(ArrayLayout(unsigned(6), cols))
    zp, lo, hi : In(signed(8))
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        self.config = config
        cols = config.cols
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(32), cols))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), cols))),
            "bias": In(data.ArrayLayout(signed(32), cols)),
            "mult": In(data.ArrayLayout(signed(32), cols)),
            "shift": In(data.ArrayLayout(unsigned(6), cols)),
            "zp": In(signed(8)),
            "lo": In(signed(8)),
            "hi": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        cols = self.config.cols
        valid = [Signal(name=f"valid{stage}") for stage in range(1, LATENCY + 1)]
        # The whole pipeline advances together unless a finished row is not taken.
        advance = ~valid[-1] | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid)]
            m.d.sync += [valid[k].eq(valid[k - 1]) for k in range(1, LATENCY)]
        m.d.comb += self.o.valid.eq(valid[-1])

        for j in range(cols):
            x = Signal(signed(32), name=f"x{j}")
            p = Signal(signed(64), name=f"p{j}")
            y = Signal(signed(64), name=f"y{j}")
            total = self.i.payload[j] + self.bias[j]
            shift = self.shift[j]
            biased = y + self.zp
            with m.If(advance):
                m.d.sync += [
                    x.eq(Mux(total > _INT32_MAX, _INT32_MAX,
                             Mux(total < _INT32_MIN, _INT32_MIN, total))),
                    p.eq(x * self.mult[j]),
                    # Bit (s - 1) of p is bit s of p << 1, and 0 when s == 0.
                    y.eq((p >> shift) + ((p << 1) >> shift)[0]),
                    self.o.payload[j].eq(Mux(biased < self.lo, self.lo,
                                             Mux(biased > self.hi, self.hi, biased))),
                ]
        return m
