# amaranth: UnusedElaboratable=no
"""BankedMemory, Scratchpad and Accumulator in Amaranth's simulator against numpy models."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.hdl import Fragment, unsigned
from amaranth.sim import Simulator
from systolic_reference import wrap

from gemmstone.config import preset
from gemmstone.hw.accumulator import Accumulator
from gemmstone.hw.banked_memory import BankedMemory
from gemmstone.hw.scratchpad import Scratchpad


def run(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def _bits(port) -> object:
    return port.as_value() if hasattr(port, "as_value") else port


@pytest.mark.parametrize(("banks", "depth"), [(1, 8), (2, 12), (4, 12)])
def test_random_traffic_behaves_like_one_transparent_memory(banks, depth):
    rng = np.random.default_rng(banks * 100 + depth)
    dut = Scratchpad(line_bytes=4, depth=depth, banks=banks, read_ports=2, write_ports=2)
    model = np.zeros(depth, dtype=np.int64)  # rows as 32-bit integers
    shown = [0, 0]  # what each read port must show (it holds while en is low)
    counts = {"same_edge": 0, "held": 0, "collisions": 0}

    async def testbench(ctx):
        for _ in range(600):
            writes = []
            for port in dut.write:
                en = rng.random() < 0.6
                addr = int(rng.integers(depth))
                # Never two writes to one bank: collisions have their own test.
                if en and any(addr % banks == other % banks for other, _ in writes):
                    en = False
                value = int(rng.integers(1 << 32))
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                ctx.set(_bits(port.data), value)
                if en:
                    writes.append((addr, value))
            reads = []
            for port in dut.read:
                en = rng.random() < 0.7
                addr = int(rng.integers(depth))
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                reads.append(addr if en else None)
            counts["collisions"] += ctx.get(dut.collision)
            await ctx.tick()
            for addr, value in writes:
                model[addr] = value
            for index, addr in enumerate(reads):
                if addr is None:
                    counts["held"] += 1
                else:
                    shown[index] = int(model[addr])
                    counts["same_edge"] += any(addr == w for w, _ in writes)
                assert ctx.get(_bits(dut.read[index].data)) == shown[index], (
                    f"read port {index} after reading {addr}")

    run(dut, testbench)
    assert counts["collisions"] == 0
    assert counts["same_edge"] > 10 and counts["held"] > 10  # both cases were exercised


def test_write_collision_keeps_the_lowest_port_and_is_flagged():
    dut = BankedMemory(shape=unsigned(16), depth=8, banks=2, write_ports=3)

    async def testbench(ctx):
        # Ports 1 and 2 write bank 1 (rows 3 and 5); port 0 writes bank 0: no conflict there.
        for port, (addr, value) in zip(dut.write, [(2, 0xAAAA), (3, 0x1111), (5, 0x2222)],
                                       strict=True):
            ctx.set(port.en, 1)
            ctx.set(port.addr, addr)
            ctx.set(port.data, value)
        assert ctx.get(dut.collision) == 1
        await ctx.tick()
        for port in dut.write:
            ctx.set(port.en, 0)
        assert ctx.get(dut.collision) == 0
        got = {}
        for addr in (2, 3, 5):
            ctx.set(dut.read[0].addr, addr)
            await ctx.tick()
            got[addr] = ctx.get(dut.read[0].data)
        assert got == {2: 0xAAAA, 3: 0x1111, 5: 0}

    run(dut, testbench)


@pytest.mark.parametrize("banks", [1, 2])
def test_accumulate_stream_adds_in_place_back_to_back(banks):
    # Random write/add transfers, many of them to the same few rows on consecutive cycles,
    # mixed with plain writes to other banks and reads; 16-bit elements so sums wrap.
    rng = np.random.default_rng(banks)
    cols, depth, width = 3, 8, 16
    dut = Accumulator(cols=cols, depth=depth, banks=banks, read_ports=2, width=width)
    model = np.zeros((depth, cols), dtype=np.int64)
    shown = [np.zeros(cols, dtype=np.int64) for _ in dut.read]
    pending = None  # the accumulate transfer whose sum is written at the next edge
    repeats = 0

    async def testbench(ctx):
        nonlocal pending, repeats
        previous_addr = None
        for _ in range(500):
            valid = rng.random() < 0.8
            addr = int(rng.integers(2)) if rng.random() < 0.5 else int(rng.integers(depth))
            values = rng.integers(-(1 << (width - 1)), 1 << (width - 1), cols)
            add = bool(rng.random() < 0.7)
            ctx.set(dut.accumulate.valid, valid)
            ctx.set(dut.accumulate.payload,
                    {"addr": addr, "data": values.tolist(), "accumulate": add})
            repeats += valid and addr == previous_addr
            previous_addr = addr if valid else None
            # A plain write, only to a bank the pending sum does not write.
            plain = rng.random() < 0.3 and (pending is None or banks > 1)
            plain_addr = int(rng.integers(depth))
            if plain and pending is not None:
                plain_addr = (plain_addr & ~(banks - 1)) | ((pending[0] + 1) % banks)
            plain_values = rng.integers(-(1 << (width - 1)), 1 << (width - 1), cols)
            ctx.set(dut.write.en, plain)
            ctx.set(dut.write.addr, plain_addr)
            ctx.set(dut.write.data, plain_values.tolist())
            reads = []
            for port in dut.read:
                en = rng.random() < 0.7
                read_addr = int(rng.integers(depth))
                ctx.set(port.en, en)
                ctx.set(port.addr, read_addr)
                reads.append(read_addr if en else None)
            assert ctx.get(dut.collision) == 0
            await ctx.tick()
            if pending is not None:
                row, addend, accumulate = pending
                model[row] = wrap((model[row] if accumulate else 0) + addend, width)
            if plain:
                model[plain_addr] = plain_values
            pending = (addr, values, add) if valid else None
            for index, read_addr in enumerate(reads):
                if read_addr is not None:
                    shown[index] = model[read_addr].copy()
                np.testing.assert_array_equal(
                    np.array(list(ctx.get(dut.read[index].data))), shown[index],
                    err_msg=f"read port {index} after reading row {read_addr}")

    run(dut, testbench)
    assert repeats > 50


def test_from_config_sizes():
    config = preset("base")
    spad = Scratchpad.from_config(config)
    assert (spad.depth, spad.banks, spad.line_bytes) == (16384, 4, 16)
    acc = Accumulator.from_config(config, read_ports=3)
    assert (acc.depth, acc.banks, acc.cols, acc.width, len(acc.read)) == (1024, 2, 16, 32, 3)
    for component in (spad, acc, Scratchpad.from_config(preset("rect")),
                      Accumulator.from_config(preset("rect"))):
        Fragment.get(component, None)  # the buffers of configs elaborate


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: BankedMemory(shape=8, depth=12, banks=8), ValueError,
     "'depth' (12) must be a multiple of 'banks' (8)"),
    (lambda: BankedMemory(shape=8, depth=12, banks=3), ValueError,
     "'banks' must be a power of two, not 3"),
    (lambda: BankedMemory(shape="wide", depth=12), TypeError,
     "'shape' must be a shape-castable object, not 'wide'"),
    (lambda: Scratchpad(line_bytes=0, depth=4), ValueError,
     "'line_bytes' must be at least 1, not 0"),
    (lambda: Accumulator(cols=4, depth=8, read_ports=0), ValueError,
     "'read_ports' must be at least 1, not 0"),
])
def test_bad_parameters_are_named(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()
