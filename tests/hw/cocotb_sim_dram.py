"""cocotb side of the standalone DRAM model tests (run by test_sim_dram.py).

The model (`gemmstone.hw.sim_dram.SimDram` as the top, ports ``axi_*``) is driven by
cocotbext-axi's `AxiMaster`; a bytearray is the reference memory. Files for the host
load/dump test go to the directory named by ``GEMMSTONE_DRAM_DIR``; the model's word
count and bus width come in ``GEMMSTONE_DRAM_WORDS`` / ``GEMMSTONE_DRAM_BYTES``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiMaster, AxiResp

from gemmstone.hw.sim_dram import file_port_value, read_image, write_image

DATA_BYTES = int(os.environ.get("GEMMSTONE_DRAM_BYTES", "16"))
WORDS = int(os.environ.get("GEMMSTONE_DRAM_WORDS", "4096"))
SIZE = DATA_BYTES * WORDS


class TB:
    def __init__(self, dut) -> None:
        self.dut = dut
        Clock(dut.clk, 10, unit="ns").start()
        self.axi = AxiMaster(AxiBus.from_prefix(dut, "axi"), dut.clk, dut.rst)
        for name in ("load", "dump", "first", "last", "rate"):
            getattr(dut, name).value = 0
        dut.latency.value = 3
        self.cycle = 0
        self.events: list[tuple[str, int]] = []

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def monitor(self) -> None:
        """Record the cycle of every AR, R, AW, W and B handshake (per-cycle Python: only
        for these short timing checks)."""
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            for channel, ready in (("ar", "arready"), ("r", "rready"), ("aw", "awready"),
                                   ("w", "wready"), ("b", "bready")):
                if (getattr(dut, f"axi_{channel}valid").value
                        and getattr(dut, f"axi_{ready}").value):
                    self.events.append((channel, self.cycle))

    def cycles_of(self, channel: str) -> list[int]:
        return [cycle for name, cycle in self.events if name == channel]


@cocotb.test()
async def bursts_strobes_and_outstanding_match_a_reference(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(7)
    reference = bytearray(SIZE)
    for rate in (0, DATA_BYTES // 2 or 1):
        dut.rate.value = rate
        for _ in range(12):
            # A batch of writes to disjoint ranges in flight together, then reads of them.
            batch = []
            for slot in range(4):
                base = slot * (SIZE // 4)
                address = base + rng.randrange(SIZE // 4 - 600)
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
                batch.append((address, data))
            writes = [tb.axi.init_write(address, data) for address, data in batch]
            for address, data in batch:
                reference[address:address + len(data)] = data
            for write in writes:
                await write.wait()
                assert write.data.resp == AxiResp.OKAY
            reads = [tb.axi.init_read(address, len(data) + 37) for address, data in batch]
            for read, (address, data) in zip(reads, batch, strict=True):
                await read.wait()
                assert read.data.resp == AxiResp.OKAY
                expected = bytes(reference[address:address + len(data) + 37])
                assert read.data.data == expected, (hex(address), rate)
    # Beyond the end: reads return DECERR, writes write nothing and answer DECERR.
    response = await tb.axi.read(SIZE, 2 * DATA_BYTES)
    assert response.resp == AxiResp.DECERR
    response = await tb.axi.write(SIZE - DATA_BYTES, bytes(2 * DATA_BYTES))
    assert response.resp == AxiResp.DECERR
    assert (await tb.axi.read(SIZE - DATA_BYTES, DATA_BYTES)).data == bytes(DATA_BYTES)
    assert not dut.error.value


@cocotb.test()
async def latency_is_cycles_from_address_to_first_beat(dut):
    tb = TB(dut)
    await tb.reset()
    cocotb.start_soon(tb.monitor())
    for latency in (2, 5, 20, 37):
        dut.latency.value = latency
        tb.events.clear()
        await tb.axi.read(0x100, DATA_BYTES)
        (ar,), (r,) = tb.cycles_of("ar"), tb.cycles_of("r")
        assert r - ar == latency, (latency, ar, r)
        tb.events.clear()
        await tb.axi.write(0x200, bytes(range(DATA_BYTES)))
        (aw,), (w,), (b,) = tb.cycles_of("aw"), tb.cycles_of("w"), tb.cycles_of("b")
        assert b - aw == max(latency, w - aw + 1), (latency, aw, w, b)
        # Bursts back to back stream one beat per cycle after the first latency.
        tb.events.clear()
        reads = [tb.axi.init_read(0x1000 + 64 * DATA_BYTES * i, 64 * DATA_BYTES)
                 for i in range(4)]
        for read in reads:
            await read.wait()
        beats = tb.cycles_of("r")
        assert len(beats) == 256
        assert beats[0] - tb.cycles_of("ar")[0] == latency
        assert beats[-1] - beats[0] == 255, (latency, beats[-1] - beats[0])


@cocotb.test()
async def rate_limits_bytes_per_cycle_shared_by_reads_and_writes(dut):
    tb = TB(dut)
    await tb.reset()
    cocotb.start_soon(tb.monitor())
    dut.latency.value = 4
    beats = 128
    for rate in sorted({DATA_BYTES, max(1, DATA_BYTES // 2), max(1, DATA_BYTES // 4), 1},
                       reverse=True):
        dut.rate.value = rate
        tb.events.clear()
        await tb.axi.read(0, beats * DATA_BYTES)
        r = tb.cycles_of("r")
        span = r[-1] - r[0]
        # beats - 1 intervals of DATA_BYTES / rate cycles each, up to one cycle of rounding.
        assert abs(span - (beats - 1) * DATA_BYTES / rate) <= 1, (rate, span)
        # Reads and writes at once share the budget.
        tb.events.clear()
        read = tb.axi.init_read(0, beats * DATA_BYTES)
        write = tb.axi.init_write(0x8000, bytes(beats * DATA_BYTES))
        await read.wait()
        await write.wait()
        moved = tb.cycles_of("r") + tb.cycles_of("w")
        span = max(moved) - min(moved)
        assert span >= (2 * beats - 1) * DATA_BYTES / rate - 1, (rate, span)
        assert span <= (2 * beats - 1) * DATA_BYTES / rate + 8, (rate, span)


@cocotb.test()
async def host_load_and_dump_move_the_whole_memory(dut):
    tb = TB(dut)
    await tb.reset()
    directory = Path(os.environ["GEMMSTONE_DRAM_DIR"])
    rng = random.Random(3)
    image = rng.randbytes(SIZE)
    write_image(directory / "in.bin", image, data_bytes=DATA_BYTES)

    async def pulse(signal, path, first, last):
        dut.file.value = file_port_value(path)
        dut.first.value, dut.last.value = first, last
        signal.value = 1
        await RisingEdge(dut.clk)
        signal.value = 0
        await RisingEdge(dut.clk)

    await pulse(dut.load, directory / "in.bin", 0, WORDS - 1)
    for address in (0, 17, SIZE // 2 + 5, SIZE - 100):
        assert (await tb.axi.read(address, 100)).data == image[address:address + 100]
    await tb.axi.write(40, b"\xaa" * 30)
    await pulse(dut.dump, directory / "out.bin", 0, WORDS - 1)
    dumped = read_image(directory / "out.bin", data_bytes=DATA_BYTES, words=WORDS)
    assert dumped == image[:40] + b"\xaa" * 30 + image[70:]
    # A partial range: words 2..4 only.
    await pulse(dut.dump, directory / "part.bin", 2, 4)
    part = read_image(directory / "part.bin", data_bytes=DATA_BYTES, words=3)
    assert part == dumped[2 * DATA_BYTES:5 * DATA_BYTES]
    assert not dut.error.value
    # A load from a missing file or a file too short for the range is an error.
    await pulse(dut.load, directory / "missing.bin", 0, 0)
    assert dut.error.value
    await tb.reset()
    assert not dut.error.value
    write_image(directory / "short.bin", b"x", data_bytes=DATA_BYTES)
    await pulse(dut.load, directory / "short.bin", 0, 1)
    assert dut.error.value
