# amaranth: UnusedElaboratable=no
"""ProcessingElement in Amaranth's simulator against a cycle-level Python model."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.sim import Simulator
from systolic_reference import wrap

from gemmstone.hw.pe import ProcessingElement


@pytest.mark.parametrize("acc_width", [32, 17])
def test_random_cycles_match_the_timing_model(acc_width):
    # a_out(t+1) = a(t); psum_out(t+2) = psum_in(t+1) + a(t) * weight[bank(t)], with the
    # weights as written by loads at edges before t's; sums wrap at acc_width.
    rng = np.random.default_rng(acc_width)
    cycles = 400
    a = rng.integers(-128, 128, cycles)
    bank = rng.integers(0, 2, cycles)
    psum_in = rng.integers(-(1 << (acc_width - 1)), 1 << (acc_width - 1), cycles)
    load = rng.random(cycles) < 0.3
    load_bank = rng.integers(0, 2, cycles)
    load_data = rng.integers(-128, 128, cycles)
    dut = ProcessingElement(acc_width=acc_width)
    a_out = np.zeros(cycles, dtype=np.int64)
    psum_out = np.zeros(cycles, dtype=np.int64)

    async def testbench(ctx):
        for t in range(cycles):
            ctx.set(dut.a, int(a[t]))
            ctx.set(dut.bank, int(bank[t]))
            ctx.set(dut.psum_in, int(psum_in[t]))
            ctx.set(dut.load, bool(load[t]))
            ctx.set(dut.load_bank, int(load_bank[t]))
            ctx.set(dut.load_data, int(load_data[t]))
            a_out[t], psum_out[t] = ctx.get(dut.a_out), ctx.get(dut.psum_out)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()

    weights = np.zeros((cycles, 2), dtype=np.int64)  # weights[t]: as seen during cycle t
    for t in range(1, cycles):
        weights[t] = weights[t - 1]
        if load[t - 1]:
            weights[t, load_bank[t - 1]] = load_data[t - 1]
    np.testing.assert_array_equal(a_out[1:], a[:-1])
    product = a[:-2] * weights[np.arange(cycles - 2), bank[:-2]]
    np.testing.assert_array_equal(psum_out[2:], wrap(psum_in[1:-1] + product, acc_width))
    assert load.any() and (bank == 1).any() and (bank == 0).any()


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"data_width": 0}, ValueError, "'data_width' must be at least 1, not 0"),
    ({"acc_width": "32"}, TypeError, "'acc_width' must be an integer, not '32'"),
    ({"data_width": 8, "acc_width": 15}, ValueError, "'acc_width' must be at least 16, not 15"),
])
def test_bad_parameters_are_named(kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ProcessingElement(**kwargs)
