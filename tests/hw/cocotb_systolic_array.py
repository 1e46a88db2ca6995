# amaranth: UnusedElaboratable=no
"""cocotb tests of the Verilated `SystolicArray` (run by test_systolic_array_verilator.py).

The array's shape is read from its port widths, so one module serves every configuration.
Python drives and samples once per cycle, on the falling edge: short tests only.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from systolic_reference import ArrayReference, random_stimulus

from gemmstone.hw.systolic_array import SystolicArray


def _shape(dut) -> tuple[int, int]:
    return len(dut.inputs__payload) // 8, len(dut.outputs__payload) // 32


def _pack(values: np.ndarray, dtype: str) -> int:
    return int.from_bytes(np.asarray(values).astype(dtype).tobytes(), "little")


async def _reset(dut) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.inputs__valid.value = 0
    dut.weights__valid.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
@cocotb.parametrize(p_input=[1.0, 0.6], p_weight=[1.0, 0.4])
async def random_streams_match_numpy(dut, p_input: float, p_weight: float) -> None:
    rows, cols = _shape(dut)
    latency = SystolicArray(rows=rows, cols=cols).latency
    rng = np.random.default_rng([cocotb.RANDOM_SEED, int(p_input * 10), int(p_weight * 10)])
    inputs, beats = random_stimulus(rng, rows=rows, cols=cols, preloads=8, max_burst=24)
    ref = ArrayReference(rows=rows, cols=cols, latency=latency)
    seen: dict[int, np.ndarray] = {}
    await _reset(dut)

    next_input = next_beat = 0
    holding = False  # a weight beat is offered and must stay until taken
    edge = 0
    while (next_input < len(inputs) or next_beat < len(beats)
           or edge <= max(ref.expected, default=-1)):
        await FallingEdge(dut.clk)
        # Mid-cycle: outputs and ready are settled, and what is driven now transfers at the
        # next rising edge; both belong to that edge in the reference's numbering.
        edge += 1
        if dut.outputs__valid.value:
            raw = dut.outputs__payload.value.to_unsigned().to_bytes(4 * cols, "little")
            seen[edge] = np.frombuffer(raw, dtype="<i4").astype(np.int64)
        ready = bool(dut.weights__ready.value)
        offer = next_input < len(inputs) and rng.random() < p_input
        dut.inputs__valid.value = offer
        if offer:
            dut.inputs__payload.value = _pack(inputs[next_input], "<i1")
        if not holding and next_beat < len(beats) and rng.random() < p_weight:
            row, last = beats[next_beat]
            dut.weights__payload.value = _pack(row, "<i1") | (int(last) << (8 * cols))
            holding = True
        dut.weights__valid.value = holding
        taken = holding and ready
        ref.edge(edge, inputs=inputs[next_input] if offer else None,
                 weights=beats[next_beat][0] if taken else None,
                 last=beats[next_beat][1] if taken else False)
        next_input += offer
        if taken:
            next_beat += 1
            holding = False

    assert len(ref.commits) == 8
    assert sorted(seen) == sorted(ref.expected), "output rows at the wrong cycles"
    for edge, row in ref.expected.items():
        np.testing.assert_array_equal(seen[edge], row, err_msg=f"output row at edge {edge}")
