# amaranth: UnusedElaboratable=no
"""SystolicArray in Amaranth's simulator, against numpy (tests/hw/systolic_reference.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from systolic_reference import ArrayReference, random_stimulus

from gemmstone.config import preset
from gemmstone.hw.systolic_array import SystolicArray


def simulate(dut: SystolicArray, inputs, beats, *, rng, p_input: float, p_weight: float,
             out_width: int = 32, input_delay: int = 0,
             ) -> tuple[ArrayReference, dict[int, np.ndarray], dict]:
    """Drive ``inputs`` (from edge ``input_delay`` on) and weight ``beats`` with random gaps;
    return the reference, the output rows seen (by edge) and the edges of the transfers."""
    ref = ArrayReference(rows=dut.rows, cols=dut.cols, latency=dut.latency,
                         out_width=out_width)
    seen: dict[int, np.ndarray] = {}
    log = {"inputs": [], "beats": [], "stalls": 0}

    async def testbench(ctx):
        next_input = next_beat = 0
        holding = False  # a weight beat is offered and must stay until taken
        edge = 0
        while (next_input < len(inputs) or next_beat < len(beats)
               or edge <= max(ref.expected, default=-1)):
            offer_input = (edge >= input_delay and next_input < len(inputs)
                           and rng.random() < p_input)
            if offer_input:
                ctx.set(dut.inputs.payload, inputs[next_input].tolist())
            ctx.set(dut.inputs.valid, offer_input)
            if not holding and next_beat < len(beats) and rng.random() < p_weight:
                row, last = beats[next_beat]
                ctx.set(dut.weights.payload, {"data": row.tolist(), "last": last})
                holding = True
            ctx.set(dut.weights.valid, holding)
            _, _, ready, out_valid, out_row = await ctx.tick().sample(
                dut.weights.ready, dut.outputs.valid, dut.outputs.payload)
            taken = holding and ready
            log["stalls"] += holding and not ready
            ref.edge(edge, inputs=inputs[next_input] if offer_input else None,
                     weights=beats[next_beat][0] if taken else None,
                     last=beats[next_beat][1] if taken else False)
            if offer_input:
                log["inputs"].append(edge)
                next_input += 1
            if taken:
                log["beats"].append(edge)
                next_beat += 1
                holding = False
            if out_valid:
                seen[edge] = np.array(list(out_row), dtype=np.int64)
            edge += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return ref, seen, log


def assert_outputs(ref: ArrayReference, seen: dict[int, np.ndarray]) -> None:
    assert sorted(seen) == sorted(ref.expected), "output rows at the wrong edges"
    for edge, row in ref.expected.items():
        np.testing.assert_array_equal(seen[edge], row, err_msg=f"output row at edge {edge}")


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 3), (3, 1), (2, 3), (4, 4), (4, 8)])
@pytest.mark.parametrize(("p_input", "p_weight"), [(1.0, 1.0), (0.6, 0.4)],
                         ids=["back-to-back", "gaps"])
def test_random_streams_match_numpy(rows, cols, p_input, p_weight):
    rng = np.random.default_rng(rows * 100 + cols + int(p_input * 10))
    dut = SystolicArray(rows=rows, cols=cols)
    inputs, beats = random_stimulus(rng, rows=rows, cols=cols, preloads=6, max_burst=8)
    ref, seen, log = simulate(dut, inputs, beats, rng=rng, p_input=p_input, p_weight=p_weight)
    assert len(ref.commits) == 6
    assert_outputs(ref, seen)


def test_sums_wrap_at_out_width():
    # 16-bit outputs from 4 rows of -128 * -128 = 16384: sums of up to 65536 must wrap.
    rng = np.random.default_rng(7)
    dut = SystolicArray(rows=4, cols=3, out_width=16)
    assert dut.psum_width == 16
    extremes = [np.full(4, -128), np.full(4, 127), np.array([-128, 127, -128, 127])]
    inputs = extremes + [rng.integers(-128, 128, 4) for _ in range(8)]
    beats = [(np.array([-128, 127, 1]), i == 3) for i in range(4)]
    ref, seen, _ = simulate(dut, inputs, beats, rng=rng, p_input=0.3, p_weight=1.0,
                            out_width=16)
    assert any(np.abs(row.astype(np.int64) @ np.full((4, 3), 128)).max() > 32767
               for row in inputs)
    assert_outputs(ref, seen)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 1), (4, 4), (3, 5)])
def test_preload_waits_exactly_until_the_back_buffer_drains(rows, cols):
    # Preload A, stream inputs from the edge after A's last beat, preload B meanwhile (into
    # the idle buffer: no wait), then a one-row preload C into A's buffer. C's beat also
    # clears rows 1.. of that buffer, which the last input row that used A reads in cell
    # (rows-1, cols-1) at edge t + rows + cols - 2: the first edge C may be taken, and the
    # edge it must be taken (no needless stall).
    rng = np.random.default_rng(rows * 10 + cols)
    dut = SystolicArray(rows=rows, cols=cols)
    a = [(rng.integers(-128, 128, cols), i == rows - 1) for i in range(rows)]
    b = [(rng.integers(-128, 128, cols), True)]
    c = [(rng.integers(-128, 128, cols), True)]
    inputs = [np.full(rows, 100 - 20 * i) for i in range(3)]
    ref, seen, log = simulate(dut, inputs, a + b + c, rng=rng, p_input=1.0, p_weight=1.0,
                              input_delay=rows)
    assert_outputs(ref, seen)
    assert log["beats"][rows - 1] < log["inputs"][0]
    commit_b = log["beats"][rows]
    last_user_of_a = max(edge for edge in log["inputs"] if edge <= commit_b)
    assert log["beats"][rows + 1] == max(last_user_of_a + rows + cols - 2, commit_b + 1)


def test_latency_and_width_attributes():
    dut = SystolicArray(rows=16, cols=8)
    assert dut.latency == 24
    assert dut.psum_width == 20
    from_config = SystolicArray.from_config(preset("rect"))
    assert (from_config.rows, from_config.cols, from_config.out_width) == (4, 8, 32)
    Fragment.get(from_config, None)  # elaborates: built from a config, it is a valid design


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"rows": 0, "cols": 4}, ValueError, "'rows' must be at least 1, not 0"),
    ({"rows": 4, "cols": 4.0}, TypeError, "'cols' must be an integer, not 4.0"),
    ({"rows": 4, "cols": 4, "data_width": True}, TypeError,
     "'data_width' must be an integer, not True"),
    ({"rows": 4, "cols": 4, "out_width": 15}, ValueError,
     "'out_width' must be at least 16, not 15"),
])
def test_bad_parameters_are_named(kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        SystolicArray(**kwargs)
