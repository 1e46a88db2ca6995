"""cocotb side of test_sim_dram.py's check of `gemmstone.hw.sim_bench.SimTopBench` on the
Verilated sim top: registers through the AXI4-Lite master, and byte-exact DRAM writes and
reads at unaligned addresses through image files (directory ``GEMMSTONE_BENCH_DIR``, bus
width ``GEMMSTONE_BENCH_BYTES``)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb

from gemmstone.hw.register_map import BY_NAME
from gemmstone.hw.sim_bench import SimTopBench


@cocotb.test()
async def registers_and_unaligned_memory_access(dut):
    bench = SimTopBench(dut, data_bytes=int(os.environ["GEMMSTONE_BENCH_BYTES"]))
    await bench.reset()
    assert await bench.read("MAGIC") == BY_NAME["MAGIC"].reset
    await bench.write("WATCHDOG", 1234)
    assert await bench.read("WATCHDOG") == 1234
    scratch = str(Path(os.environ["GEMMSTONE_BENCH_DIR"]) / "scratch.bin")
    rng = random.Random(9)
    reference = bytearray(rng.randbytes(4096))
    await bench.write_memory(0, bytes(reference), scratch)
    for _ in range(40):
        address = rng.randrange(4000)
        data = rng.randbytes(rng.randrange(1, 90))
        data = data[:4096 - address]
        await bench.write_memory(address, data, scratch)
        reference[address:address + len(data)] = data
        start = rng.randrange(4000)
        length = rng.randrange(0, 4096 - start)
        assert await bench.read_memory(start, length, scratch) == reference[start:start + length]
    assert await bench.read_memory(0, 4096, scratch) == reference
    assert not dut.dram_error.value
