"""`ProcessingElement`: one multiply-accumulate cell of the weight-stationary systolic array."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.hw.params import check_int

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """A signed multiply-accumulate cell holding two stationary weights (double buffering).

    The cell multiplies the element passing through it by one of its two weights and adds
    the product to the partial sum coming from above. The product is registered before the
    adder: on FPGAs the multiplier then ends in its own register (DSP output register), so
    the critical path is no longer input flip-flop -> multiplier -> carry chain.

    Timing, for an element ``a`` presented in cycle ``t``::

        a_out, bank_out (t + 1)  = a, bank (t)
        psum_out        (t + 2)  = psum_in (t + 1) + a (t) * weight[bank (t)]

    so a partial sum must reach ``psum_in`` one cycle after the element reaches ``a``.
    The sum wraps at ``acc_width`` bits.

    Parameters
    ----------
    data_width : int
        Width of the signed input and weight elements (8 for int8).
    acc_width : int
        Width of the signed partial sums, at least ``2 * data_width``.

    Members
    -------
    a : ``In(signed(data_width))``
        Input element.
    bank : ``In(1)``
        Which of the two weights multiplies ``a``; travels with it.
    a_out, bank_out : ``Out(signed(data_width))``, ``Out(1)``
        ``a`` and ``bank`` one cycle later, for the cell on the right.
    psum_in : ``In(signed(acc_width))``
        Partial sum from the cell above.
    psum_out : ``Out(signed(acc_width))``
        Partial sum for the cell below.
    load : ``In(1)``
        Write ``load_data`` into weight ``load_bank`` at the clock edge.
    load_bank : ``In(1)``
        Which weight ``load`` writes.
    load_data : ``In(signed(data_width))``
        The weight written.

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If ``data_width < 1`` or ``acc_width < 2 * data_width``.
    """

    def __init__(self, *, data_width: int = 8, acc_width: int = 32) -> None:
        check_int("data_width", data_width)
        check_int("acc_width", acc_width, minimum=2 * data_width)
        self.data_width = data_width
        self.acc_width = acc_width
        super().__init__({
            "a": In(signed(data_width)),
            "bank": In(1),
            "a_out": Out(signed(data_width)),
            "bank_out": Out(1),
            "psum_in": In(signed(acc_width)),
            "psum_out": Out(signed(acc_width)),
            "load": In(1),
            "load_bank": In(1),
            "load_data": In(signed(data_width)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        weights = [Signal(signed(self.data_width), name=f"weight{i}") for i in range(2)]
        product = Signal(signed(2 * self.data_width))
        with m.If(self.load):
            with m.If(self.load_bank):
                m.d.sync += weights[1].eq(self.load_data)
            with m.Else():
                m.d.sync += weights[0].eq(self.load_data)
        m.d.sync += [
            self.a_out.eq(self.a),
            self.bank_out.eq(self.bank),
            product.eq(self.a * Mux(self.bank, weights[1], weights[0])),
            self.psum_out.eq(self.psum_in + product),
        ]
        return m
