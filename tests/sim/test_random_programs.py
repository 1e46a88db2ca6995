"""The random program generator: its programs are valid, follow the token protocol (as
ProgramBuilder checks it), are race-free and self-contained, and cover the ISA."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.config import preset
from gemmstone.isa import AccLoadType, AluFunc, StoreMode, decode, encode, make
from gemmstone.sim.functional import FunctionalModel
from gemmstone.sim.random_programs import TOKEN_QUEUES, random_program

CONFIGS = [preset("tiny"), preset("rect"), preset("small")]
SEEDS = range(40)


def final_memory(config, program, *, schedule=None, garbage=None) -> np.ndarray:
    """The window after running ``program``; with ``garbage``, the scratchpad, the
    accumulator and the weights start full of random values instead of zeros."""
    model = FunctionalModel(config.replace(dram_mib=1))
    model.dram[:program.window_size] = np.frombuffer(program.segments[0].data, np.uint8)
    if garbage is not None:
        rng = np.random.default_rng(garbage)
        model.spad[:] = rng.integers(-128, 128, model.spad.shape)
        model.acc[:] = rng.integers(-(1 << 31), 1 << 31, model.acc.shape)
        model.weights[:] = rng.integers(-128, 128, model.weights.shape)
    model.run(program.words, window_size=program.window_size, schedule_seed=schedule)
    return model.dram[:program.window_size].copy()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}")
def test_programs_are_valid_race_free_and_self_contained(config):
    for seed in SEEDS:
        program = random_program(config, seed, length=120)
        reference = final_memory(config, program)
        for schedule in range(3):
            assert (final_memory(config, program, schedule=schedule) == reference).all(), seed
        assert (final_memory(config, program, garbage=seed) == reference).all(), seed


@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: f"{c.rows}x{c.cols}")
def test_tokens_follow_the_builders_rules(config):
    """Replayed through ProgramBuilder (which checks pairing and depth per fence and clears
    pushes nobody pops), a program comes out unchanged."""
    for seed in SEEDS:
        program = random_program(config, seed, length=120)
        builder = ProgramBuilder(config)
        for word in program.words[:-1]:
            instr = decode(word)
            if instr.mnemonic == "fence":
                builder.fence()
            else:
                builder.emit(instr.mnemonic, **instr.values)
        assert builder.finish().words == program.words, seed


def test_removing_the_tokens_makes_programs_racy():
    """The race check above has teeth: without their tokens, the programs' results depend
    on the schedule."""
    config = preset("tiny")
    racy = 0
    for seed in range(10):
        program = copy.copy(random_program(config, seed, length=80))
        program.words = [encode(make(instr.mnemonic, **{
            name: 0 if name.startswith(("pop_", "push_")) else value
            for name, value in instr.values.items()}))
            for instr in map(decode, program.words)]
        reference = final_memory(config, program)
        racy += any((final_memory(config, program, schedule=s) != reference).any()
                    for s in range(6))
    assert racy >= 8


def test_programs_cover_the_isa():
    config = preset("rect")
    seen = Counter()
    for seed in SEEDS:
        for word in random_program(config, seed, length=120).words:
            instr = decode(word)
            v = instr.values
            seen[instr.mnemonic] += 1
            for name, queue in TOKEN_QUEUES.items():
                if instr.spec.unit is queue.producer and v[queue.push]:
                    seen[f"push {name}"] += 1
                if instr.spec.unit is queue.consumer and v[queue.pop]:
                    seen[f"pop {name}"] += 1
            if "n" in v and v["n"] == 0:
                seen[f"{instr.mnemonic} n=0"] += 1
            if instr.mnemonic == "load":
                seen["load pad"] += bool(v["pad_lo"] and v["pad_hi"])
                seen["load odd stride"] += v["stride"] % 2 == 1 and v["n"] > 1
                seen["load overlapping lines"] += v["stride"] < v["len"] and v["n"] > 1
                seen["load partial line"] += v["len"] < config.line_bytes
            if instr.mnemonic in ("loadacc", "matmul"):
                seen[f"{instr.mnemonic} accumulate={v['accumulate']}"] += 1
            if instr.mnemonic == "loadacc":
                seen[f"loadacc {v['type'].name}"] += 1
            if instr.mnemonic == "alu":
                seen[f"alu {v['func'].name}"] += 1
                seen[f"alu use_imm={v['use_imm']}"] += 1
                seen["alu src=dst"] += not v["use_imm"] and v["src"] == v["dst"] and v["n"] > 0
            if instr.mnemonic == "store":
                seen[f"store {v['mode'].name}"] += 1
                seen["store gaps"] += v["n"] > 1 and v["stride"] > v["len"] * 4
    wanted = (["load", "loadacc", "loadq", "config", "preload", "matmul", "alu", "store",
               "fence", "halt", "load pad", "load odd stride", "load overlapping lines",
               "load partial line", "alu src=dst", "store gaps"]
              + [f"{action} {name}" for name in TOKEN_QUEUES for action in ("push", "pop")]
              + [f"{m} n=0" for m in ("load", "loadacc", "matmul", "alu", "store")]
              + [f"{m} accumulate={a}" for m in ("loadacc", "matmul") for a in (0, 1)]
              + [f"loadacc {t.name}" for t in AccLoadType]
              + [f"alu {f.name}" for f in AluFunc] + ["alu use_imm=0", "alu use_imm=1"]
              + [f"store {mode.name}" for mode in StoreMode])
    missing = [what for what in wanted if seen[what] < 3]
    assert not missing, missing


def test_equal_seeds_give_equal_programs():
    config = preset("tiny")
    first, again, other = (random_program(config, seed, length=50) for seed in (3, 3, 4))
    assert first.to_bytes() == again.to_bytes()
    assert first.words != other.words
    assert first.notes["seed"] == 3


def test_a_shorter_program_is_a_prefix_of_a_longer_one():
    """Lengths can be bisected to find the first instruction where RTL and model part."""
    config = preset("tiny")
    long, short = random_program(config, 9, length=60), random_program(config, 9, length=30)
    strip = {"push_prev": 0, "push_next": 0}
    for a, b in zip(short.words[:-1], long.words, strict=False):
        ia, ib = decode(a), decode(b)
        assert ia.mnemonic == ib.mnemonic
        assert {**ia.values, **strip} == {**ib.values, **strip}


@pytest.mark.parametrize(("arguments", "message"), [
    ({"length": 0}, "'length' must be a positive integer, not 0"),
    ({"window_size": 100}, "'window_size' must be an integer of at least 64 x cols = 512 "
                           "bytes, not 100"),
])
def test_bad_arguments_are_rejected(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        random_program(preset("rect"), 0, **arguments)
