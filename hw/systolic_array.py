"""`SystolicArray`: the weight-stationary matrix engine, fully pipelined, with double-buffered
weights."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.params import check_int
from gemmstone.hw.pe import ProcessingElement

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` grid of `ProcessingElement` cells, weight stationary.

    Every cycle the array may take one input row ``x`` (``rows`` signed elements) and, a
    fixed `latency` later, it presents the output row ``y[j] = sum_k x[k] * W[k][j]``
    (``cols`` signed elements, wrapping at ``out_width`` bits). Input skew and output de-skew
    happen inside: rows go in and come out whole, one per cycle, with no gaps required.

    Weights are double buffered. A preload writes the back buffer one weight row per beat
    (row 0 first); its ``last`` beat zeroes the rows not written (``W[i] = 0`` for
    ``i >= k`` after ``k`` beats) and makes the back buffer the front one. An input row uses
    the weights of the last preload whose ``last`` beat was accepted *before* it, so the next
    preload overlaps the computation on the current weights. A preload beat waits
    (``weights.ready`` low) only while rows that used the back buffer before the last swap are
    still passing through the cells, at most ``rows + cols - 3`` cycles after the last such
    input row. Beats beyond ``rows`` in one preload are ignored. Both buffers are zero after
    reset.

    Parameters
    ----------
    rows : int
        Cells per column: the reduction length (K) of one input row.
    cols : int
        Cells per row: the number of outputs (N) per input row.
    data_width : int
        Width of the signed input and weight elements (8 for int8).
    out_width : int
        Width of the signed output elements (32 for int32), at least ``2 * data_width``.

    Members
    -------
    inputs : ``In(stream.Signature(data.ArrayLayout(signed(data_width), rows),
    always_ready=True))``
        Input rows, one per cycle at most; never back-pressured.
    weights : ``In(stream.Signature(data.StructLayout({"data": data.ArrayLayout(
    signed(data_width), cols), "last": 1})))``
        Weight rows of a preload, row 0 first; ``last`` marks the final row.
    outputs : ``Out(stream.Signature(data.ArrayLayout(signed(out_width), cols),
    always_ready=True))``
        Output rows, `latency` cycles after their input rows; the consumer cannot stall them.

    Attributes
    ----------
    latency : int
        Cycles from an input row's transfer to its output row's (``rows + cols``).
    psum_width : int
        Width of the partial sums inside the array: no wider than a sum of ``rows``
        products needs (narrower adders), which keeps the wrapping result exact.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If ``rows``, ``cols`` or ``data_width`` is below 1, or ``out_width`` below
        ``2 * data_width``.
    """

    def __init__(self, *, rows: int, cols: int, data_width: int = 8, out_width: int = 32):
        self.rows = check_int("rows", rows)
        self.cols = check_int("cols", cols)
        self.data_width = check_int("data_width", data_width)
        self.out_width = check_int("out_width", out_width, minimum=2 * data_width)
        # |product| <= 2**(2 * data_width - 2), so a sum of `rows` products fits in
        # 2 * data_width + ceil_log2(rows) signed bits; wrapping at out_width is kept exact.
        self.psum_width = min(out_width, 2 * data_width + ceil_log2(rows))
        self.latency = rows + cols
        element = signed(data_width)
        super().__init__({
            "inputs": In(stream.Signature(data.ArrayLayout(element, rows), always_ready=True)),
            "weights": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(element, cols),
                "last": 1,
            }))),
            "outputs": Out(stream.Signature(data.ArrayLayout(signed(out_width), cols),
                                            always_ready=True)),
        })

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> SystolicArray:
        """The array of ``config`` (int8 inputs and weights, int32 outputs)."""
        return cls(rows=config.rows, cols=config.cols, data_width=8 * config.input_bytes,
                   out_width=8 * config.acc_elem_bytes)

    def elaborate(self, platform) -> Module:
        m = Module()
        rows, cols = self.rows, self.cols
        cells = [[ProcessingElement(data_width=self.data_width, acc_width=self.psum_width)
                  for _ in range(cols)] for _ in range(rows)]
        for i, row in enumerate(cells):
            for j, cell in enumerate(row):
                m.submodules[f"pe_{i}_{j}"] = cell

        front = Signal()  # the weight buffer new input rows use; preloads write the other
        self._elaborate_preload(m, cells, front)

        # Input skew: element k enters row k after k cycles, with the buffer it must use.
        for k in range(rows):
            a, bank = self.inputs.payload[k], front
            for stage in range(k):
                a_next = Signal(signed(self.data_width), name=f"skew_a_{k}_{stage}")
                bank_next = Signal(name=f"skew_bank_{k}_{stage}")
                m.d.sync += [a_next.eq(a), bank_next.eq(bank)]
                a, bank = a_next, bank_next
            m.d.comb += [cells[k][0].a.eq(a), cells[k][0].bank.eq(bank)]

        for i in range(rows):
            for j in range(cols):
                cell = cells[i][j]
                if j > 0:
                    m.d.comb += [cell.a.eq(cells[i][j - 1].a_out),
                                 cell.bank.eq(cells[i][j - 1].bank_out)]
                psum_in = cells[i - 1][j].psum_out if i > 0 else Const(0, self.psum_width)
                m.d.comb += cell.psum_in.eq(psum_in)

        # Output de-skew: column j finishes j cycles after column 0; delay the early ones.
        for j in range(cols):
            psum = cells[rows - 1][j].psum_out
            for stage in range(cols - 1 - j):
                psum_next = Signal(signed(self.psum_width), name=f"deskew_{j}_{stage}")
                m.d.sync += psum_next.eq(psum)
                psum = psum_next
            m.d.comb += self.outputs.payload[j].eq(psum)

        valid = self.inputs.valid
        for stage in range(self.latency):
            valid_next = Signal(name=f"valid_{stage}")
            m.d.sync += valid_next.eq(valid)
            valid = valid_next
        m.d.comb += self.outputs.valid.eq(valid)
        return m

    def _elaborate_preload(self, m: Module, cells, front: Signal) -> None:
        rows = self.rows
        # An input row taken in cycle t multiplies in its last cell (rows-1, cols-1) at the
        # edge ending cycle t + rows + cols - 2; a weight write at that edge or later is safe.
        drain = max(self.rows + self.cols - 3, 0)
        busy = [Signal(range(drain + 1), name=f"busy{bank}") for bank in range(2)]
        for bank, count in enumerate(busy):
            with m.If(self.inputs.valid & (front == bank)):
                m.d.sync += count.eq(drain)
            with m.Elif(count != 0):
                m.d.sync += count.eq(count - 1)
        m.d.comb += self.weights.ready.eq(Mux(front, busy[0], busy[1]) == 0)

        beat = Signal(range(rows + 1))  # weight row the next beat writes; `rows` = ignore
        accept = self.weights.valid & self.weights.ready
        last = self.weights.payload.last
        with m.If(accept):
            with m.If(last):
                m.d.sync += [beat.eq(0), front.eq(~front)]
            with m.Elif(beat != rows):
                m.d.sync += beat.eq(beat + 1)

        for i in range(rows):
            hit = Signal(name=f"load_row_{i}")
            load = Signal(name=f"load_or_clear_row_{i}")
            m.d.comb += [hit.eq(beat == i), load.eq(accept & (hit | (last & (beat < i))))]
            for j in range(self.cols):
                cell = cells[i][j]
                m.d.comb += [
                    cell.load.eq(load),
                    cell.load_bank.eq(~front),
                    cell.load_data.eq(Mux(hit, self.weights.payload.data[j], 0)),
                ]
