"""Dispatch routes, checks and orders words exactly as the ISA decoder and functional model
say: same queue per instruction, same first illegal word, fence/halt/end behaviour."""

import random

from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_strategies import instruction_values

from gemmstone.hw.dispatch import Dispatch
from gemmstone.isa import ErrorCode, IllegalInstructionError, Unit, assemble, decode, encode, make


def simulate(words, *, idle_after=0, tokens_zero=True, ready_probability=0.7, seed=0):
    """Feed ``words`` to the dispatcher; return (routed entries, done, error, code, index)."""
    rng = random.Random(seed)
    dut = Dispatch()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    routed = []
    outcome = {}

    async def testbench(ctx):
        ctx.set(dut.length, len(words))
        ctx.set(dut.tokens_zero, tokens_zero)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        position, cycles = 0, 0
        while not (ctx.get(dut.done) or ctx.get(dut.error)) and cycles < 20 * len(words) + 50:
            cycles += 1
            ctx.set(dut.idle, cycles > idle_after)
            if position < len(words):
                ctx.set(dut.words.payload, words[position])
                ctx.set(dut.words.valid, 1)
            else:
                ctx.set(dut.words.valid, 0)
            readies = {}
            for name in ("load", "compute", "store"):
                readies[name] = rng.random() < ready_probability
                ctx.set(getattr(dut, name).ready, readies[name])
            taken = ctx.get(dut.words.ready) and ctx.get(dut.words.valid)
            for name in ("load", "compute", "store"):
                queue = getattr(dut, name)
                if ctx.get(queue.valid) and readies[name]:
                    routed.append((name, ctx.get(queue.payload.index),
                                   ctx.get(queue.payload.word)))
            await ctx.tick()
            position += bool(taken)
        outcome.update(done=ctx.get(dut.done), error=ctx.get(dut.error),
                       code=ctx.get(dut.error_code), index=ctx.get(dut.error_index))

    sim.add_testbench(testbench)
    sim.run()
    return routed, outcome


def expected_routing(words):
    routed, first_illegal = [], None
    for index, word in enumerate(words):
        try:
            instr = decode(word)
        except IllegalInstructionError:
            first_illegal = index
            break
        if instr.spec.unit is not Unit.DISPATCH:
            routed.append((instr.spec.unit.name.lower(), index, word))
    return routed, first_illegal


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(instruction_values().map(lambda sv: encode(make(sv[0].mnemonic,
                                                                          **sv[1]))),
                          st.integers(0, (1 << 128) - 1)), min_size=1, max_size=25),
       st.integers(0, 1000))
def test_routing_and_illegal_words_match_the_decoder(words, seed):
    words = [w for w in words if w & 0xF != 10]  # no halt inside: the end is tested below
    expected, first_illegal = expected_routing(words)
    routed, outcome = simulate(words, seed=seed)
    assert routed == expected
    assert outcome["error"]
    if first_illegal is None:
        assert (outcome["code"], outcome["index"]) == (ErrorCode.PROGRAM_END, len(words))
    else:
        assert (outcome["code"], outcome["index"]) == (ErrorCode.ILLEGAL_INSTRUCTION,
                                                       first_illegal)


def test_halt_finishes_when_idle_and_no_tokens_left():
    words = assemble("load len=1\nfence\nstore len=1\nhalt\nload len=1")
    routed, outcome = simulate(words, idle_after=30)
    assert [name for name, _, _ in routed] == ["load", "store"]
    assert outcome["done"] and not outcome["error"]


def test_halt_with_tokens_left_reports_the_halt():
    words = assemble("load len=1 push_next\nhalt")
    _, outcome = simulate(words, tokens_zero=False)
    assert outcome["error"]
    assert (outcome["code"], outcome["index"]) == (ErrorCode.TOKEN, 1)
