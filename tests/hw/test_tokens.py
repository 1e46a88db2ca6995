"""Token counters: pushes and pops per queue, cancelling, clear, all_zero."""

import random

import pytest
from amaranth.sim import Simulator

from gemmstone.hw.tokens import QUEUES, TokenCounters


def test_counters_follow_random_legal_pushes_and_pops():
    depth = 3
    dut = TokenCounters(depth=depth)
    rng = random.Random(5)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    counts = dict.fromkeys(QUEUES, 0)
    checked = []

    async def testbench(ctx):
        for _ in range(400):
            for queue in QUEUES:
                # Units never push into a full queue nor pop an empty one.
                pop = counts[queue] > 0 and rng.random() < 0.5
                push = rng.randint(0, min(2, depth - counts[queue] + pop))
                ctx.set(getattr(dut, f"push_{queue}"), push)
                ctx.set(getattr(dut, f"pop_{queue}"), pop)
                counts[queue] += push - pop
            await ctx.tick()
            got = {queue: ctx.get(getattr(dut, f"count_{queue}")) for queue in QUEUES}
            checked.append(got == counts)
            assert ctx.get(dut.all_zero) == (sum(counts.values()) == 0)
        ctx.set(dut.clear, 1)
        for queue in QUEUES:
            ctx.set(getattr(dut, f"push_{queue}"), 0)
            ctx.set(getattr(dut, f"pop_{queue}"), 0)
        await ctx.tick()
        assert ctx.get(dut.all_zero)

    sim.add_testbench(testbench)
    sim.run()
    assert len(checked) == 400 and all(checked)


def test_depth_must_be_positive():
    with pytest.raises(TypeError, match=r"^'depth' must be a positive integer, not 0$"):
        TokenCounters(depth=0)
