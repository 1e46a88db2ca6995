"""The accumulator ALU against the functional model's ALU instruction, every function."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gemmstone import preset
from gemmstone.hw.acc_alu import AccAlu
from gemmstone.isa import AluFunc, assemble
from gemmstone.sim.functional import FunctionalModel


@pytest.mark.parametrize("func", list(AluFunc), ids=lambda f: f.name.lower())
def test_acc_alu_matches_functional_model(func):
    config = preset("tiny")
    rng = np.random.default_rng(int(func))
    rows, shift = 24, 13
    d = rng.integers(-(1 << 31), 1 << 31, (rows, config.cols), dtype=np.int64)
    b = rng.integers(-(1 << 31), 1 << 31, (rows, config.cols), dtype=np.int64)
    d[:4] = rng.integers(-70000, 70000, (4, config.cols))  # values that do not saturate
    b[:4] = rng.integers(-40, 40, (4, config.cols))
    d[4, :2] = [(1 << 31) - 1, -(1 << 31)]

    model = FunctionalModel(config)
    model.acc[:rows] = d
    model.acc[rows:2 * rows] = b
    model.run(assemble(f"alu func={func.name.lower()} dst=0 src={rows} n={rows} "
                       f"shift={shift}\nhalt"), window_size=0)
    expected = model.acc[:rows]

    dut = AccAlu(config=config)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    received = []

    async def producer(ctx):
        ctx.set(dut.func, int(func))
        ctx.set(dut.shift, shift)
        for i in range(rows):
            while rng.random() < 0.25:
                await ctx.tick()
            for j in range(config.cols):
                ctx.set(dut.i.payload.d[j], int(d[i, j]))
                ctx.set(dut.i.payload.b[j], int(b[i, j]))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(received) < rows:
            ready = rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            valid = ctx.get(dut.o.valid)
            row = [ctx.get(dut.o.payload[j]) for j in range(config.cols)]
            await ctx.tick()
            if ready and valid:
                received.append(row)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(1e-8 * 1000)
    np.testing.assert_array_equal(np.array(received), expected)
