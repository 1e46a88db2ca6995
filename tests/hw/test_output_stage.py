"""The output stage against the functional model's requantize, with stalls on both sides."""

import numpy as np
from amaranth.sim import Simulator

from gemmstone import preset
from gemmstone.hw.output_stage import OutputStage
from gemmstone.sim.functional import requantize


def test_output_stage_matches_functional_model_under_backpressure():
    config = preset("tiny")
    cols = config.cols
    rng = np.random.default_rng(7)
    rows = 60
    acc = rng.integers(-(1 << 31), 1 << 31, (rows, cols), dtype=np.int64).astype(np.int32)
    acc[:10] = rng.integers(-3000, 3000, (10, cols))  # small values: results not all clamped
    bias = rng.integers(-(1 << 31), 1 << 31, cols, dtype=np.int64).astype(np.int32)
    bias[:2] = [(1 << 31) - 1, -(1 << 31)]  # saturation on both sides
    mult = rng.integers(-(1 << 31), 1 << 31, cols, dtype=np.int64).astype(np.int32)
    shift = np.array([0, 1, 37, 63], np.int32)
    zp, lo, hi = -5, -100, 90
    expected = requantize(acc, bias, mult, shift, zp, lo, hi)

    dut = OutputStage(config=config)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    received = []

    async def producer(ctx):
        for j in range(cols):
            ctx.set(dut.bias[j], int(bias[j]))
            ctx.set(dut.mult[j], int(mult[j]))
            ctx.set(dut.shift[j], int(shift[j]))
        ctx.set(dut.zp, zp)
        ctx.set(dut.lo, lo)
        ctx.set(dut.hi, hi)
        for row in acc:
            while rng.random() < 0.3:  # gaps in the input stream
                await ctx.tick()
            for j in range(cols):
                ctx.set(dut.i.payload[j], int(row[j]))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(received) < rows:
            ready = rng.random() < 0.6  # back-pressure on the output
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            row = [ctx.get(dut.o.payload[j]) for j in range(cols)]
            await ctx.tick()
            if ready and valid:  # the transfer happens at this clock edge
                received.append(row)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * 2000)
    np.testing.assert_array_equal(np.array(received), expected)
