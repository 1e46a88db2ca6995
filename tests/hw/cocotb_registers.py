"""cocotb tests of `RegisterBlock` on Verilator (run by test_registers.py), through
cocotbext-axi's `AxiLiteMaster`.

The core side is driven and watched on falling edges, where every value of the cycle is
settled: a pulse driven at one falling edge lasts exactly one cycle. The configuration the
block was built from is the preset named by ``GEMMSTONE_REGISTERS_PRESET``.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from gemmstone.config import preset
from gemmstone.hw.register_map import BY_NAME, REGISTERS, Access, Kind
from gemmstone.isa import isa_hash
from gemmstone.isa.errors import ErrorCode

CONFIG = preset(os.environ.get("GEMMSTONE_REGISTERS_PRESET", "small"))
EVENTS = [r.port for r in REGISTERS if r.kind is Kind.COUNTER and r.increment != "running"]
BUSY, DONE, ERROR = 1, 2, 4
PERIOD_NS = 10


class TB:
    def __init__(self, dut) -> None:
        self.dut = dut
        Clock(dut.clk, PERIOD_NS, unit="ns").start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "bus"), dut.clk, dut.rst)
        for name in ("done", "error", "error_code", "error_index", "error_addr",
                     "dispatch_index", *EVENTS):
            getattr(dut, f"core_{name}").value = 0

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def read(self, name: str, word: int = 0) -> int:
        response = await self.axil.read(BY_NAME[name].offset + 4 * word, 4)
        assert response.resp == AxiResp.OKAY, f"reading {name}: {response.resp!r}"
        return int.from_bytes(response.data, "little")

    async def read64(self, name: str) -> int:
        low = await self.read(name, 0)
        return low | await self.read(name, 1) << 32

    async def write(self, name: str, value: int) -> None:
        response = await self.axil.write(BY_NAME[name].offset, value.to_bytes(4, "little"))
        assert response.resp == AxiResp.OKAY, f"writing {name}: {response.resp!r}"

    async def pulse(self, **values: int) -> int:
        """Drive core inputs for exactly one cycle; return that cycle (see `Watch`)."""
        await FallingEdge(self.dut.clk)
        cycle = _cycle()
        for name, value in values.items():
            getattr(self.dut, f"core_{name}").value = value
        await FallingEdge(self.dut.clk)
        for name in values:
            getattr(self.dut, f"core_{name}").value = 0
        return cycle


def _cycle() -> int:
    """Number of the clock cycle now (cycle k holds falling edge k)."""
    return round(get_sim_time("ns") - PERIOD_NS / 2) // PERIOD_NS


class Watch:
    """Records the cycles in which some core outputs are high, sampled at falling edges.

    Only for outputs of the DUT: an input the test drives at a falling edge may be seen
    there before or after the write lands.
    """

    def __init__(self, dut, names: tuple[str, ...]) -> None:
        self.dut = dut
        self.seen: dict[str, list[int]] = {name: [] for name in names}
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.dut.clk)
            for name, cycles in self.seen.items():
                if getattr(self.dut, f"core_{name}").value:
                    cycles.append(_cycle())


def expected_reset(register) -> int:
    if register.name == "CONFIG_ID":
        return int(CONFIG.content_hash[:8], 16)
    if register.name == "ISA_ID":
        return int(isa_hash()[:8], 16)
    return register.reset


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def reset_values_and_ids(dut) -> None:
    tb = TB(dut)
    await tb.reset()
    for register in REGISTERS:
        value = await tb.read64(register.name) if register.width == 64 else \
            await tb.read(register.name)
        assert value == expected_reset(register), f"{register.name} = {value:#x}"
    assert await tb.read("MAGIC") == int.from_bytes(b"GEMS", "big")
    for register in REGISTERS:
        if register.kind is Kind.CONFIG:
            assert getattr(dut, f"core_{register.port}").value == register.reset


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def writes_reach_rw_registers_only(dut) -> None:
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(cocotb.RANDOM_SEED)
    written = {}
    for register in REGISTERS:
        if register.access is Access.RW:
            written[register.name] = rng.getrandbits(32)
            await tb.write(register.name, written[register.name])
    for name, value in written.items():
        assert await tb.read(name) == value, name
        assert getattr(dut, f"core_{BY_NAME[name].port}").value == value
    # Byte strobes: two bytes written in the middle of INSTR_BASE.
    await tb.axil.write(BY_NAME["INSTR_BASE"].offset + 1, b"\xaa\xbb")
    expected = written["INSTR_BASE"] & 0xFF0000FF | 0xBBAA00
    assert await tb.read("INSTR_BASE") == expected
    # Read-only registers ignore writes (and answer OKAY); CONTROL reads as 0.
    for register in REGISTERS:
        if register.access is Access.RO:
            for word in range(register.words):
                await tb.axil.write(register.offset + 4 * word, b"\xff\xff\xff\xff")
            value = await tb.read64(register.name) if register.width == 64 else \
                await tb.read(register.name)
            assert value == expected_reset(register), f"{register.name} = {value:#x}"
    assert await tb.read("CONTROL") == 0
    assert await tb.read("STATUS") == 0  # no write of CONTROL above started anything
    # Unmapped offsets answer SLVERR.
    unmapped = 0x044
    assert all(unmapped not in range(r.offset, r.offset + 4 * r.words) for r in REGISTERS)
    assert (await tb.axil.read(unmapped, 4)).resp == AxiResp.SLVERR
    assert (await tb.axil.write(unmapped, b"\x01\x00\x00\x00")).resp == AxiResp.SLVERR


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def a_run_counts_events_and_keeps_the_first_error(dut) -> None:
    tb = TB(dut)
    await tb.reset()
    watch = Watch(dut, ("start",))
    await tb.write("CONTROL", 1)
    assert await tb.read("STATUS") == BUSY
    rng = random.Random(cocotb.RANDOM_SEED)
    counts = dict.fromkeys(EVENTS, 0)
    await FallingEdge(dut.clk)
    for _ in range(120):
        for name in EVENTS:
            top = CONFIG.dram_bytes_per_cycle if name.startswith("bytes") else 1
            value = rng.randint(0, top) if rng.random() < 0.5 else 0
            getattr(dut, f"core_{name}").value = value
            counts[name] += value
        await FallingEdge(dut.clk)
    for name in EVENTS:
        getattr(dut, f"core_{name}").value = 0
    await tb.pulse(error=1, error_code=ErrorCode.DMA_WINDOW, error_index=7, error_addr=0x1234)
    await tb.pulse(error=1, error_code=ErrorCode.TOKEN, error_index=9, error_addr=0x99)
    assert await tb.read("STATUS") == BUSY | ERROR
    done = await tb.pulse(done=1)
    assert await tb.read("STATUS") == DONE | ERROR
    assert await tb.read("ERROR_CODE") == ErrorCode.DMA_WINDOW
    assert await tb.read("ERROR_INDEX") == 7
    assert await tb.read("ERROR_ADDR") == 0x1234
    for name in EVENTS:
        assert await tb.read64(name.upper()) == counts[name], name
    # Busy from the cycle of the start pulse through the cycle of the done pulse.
    [start] = watch.seen["start"]
    assert await tb.read64("CYCLES") == done - start + 1

    # A new start clears the status, the error and the counters.
    await tb.write("CONTROL", 1)
    assert await tb.read("STATUS") == BUSY
    assert await tb.read("ERROR_CODE") == 0
    assert await tb.read64("BUSY_LOAD") == 0
    # START while busy is ignored: no second pulse, nothing cleared.
    await tb.pulse(busy_load=1)
    await tb.write("CONTROL", 1)
    assert len(watch.seen["start"]) == 2
    assert await tb.read64("BUSY_LOAD") == 1
    await tb.pulse(done=1)
    assert await tb.read("STATUS") == DONE


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def counter_halves_are_read_consistently(dut) -> None:
    """Reading the low half latches the high half, so a carry between the two reads does
    not tear the value."""
    tb = TB(dut)
    await tb.reset()
    await tb.write("CONTROL", 1)
    await FallingEdge(dut.clk)
    start = (1 << 32) - 4
    dut.cycles.value = start  # the counter register, through Verilator's public access
    low = await tb.read("CYCLES", 0)
    high = await tb.read("CYCLES", 1)
    assert low >= start, f"the carry came before the low half was read ({low:#x})"
    assert start <= low | high << 32 < start + 20, f"torn read {high:#x}:{low:#x}"
    assert await tb.read64("CYCLES") >> 32 == 1


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def watchdog_aborts_a_long_run(dut) -> None:
    tb = TB(dut)
    await tb.reset()
    limit = 40
    await tb.write("WATCHDOG", limit)
    dut.core_dispatch_index.value = 99
    watch = Watch(dut, ("start", "abort"))
    await tb.write("CONTROL", 1)
    for _ in range(limit + 10):
        await FallingEdge(dut.clk)
    [start] = watch.seen["start"]
    # CYCLES reaches the limit at the end of cycle start + limit - 1; abort follows the edge
    # after it is seen.
    assert watch.seen["abort"][0] == start + limit + 1
    assert await tb.read("STATUS") == BUSY | ERROR
    assert await tb.read("ERROR_CODE") == ErrorCode.WATCHDOG
    assert await tb.read("ERROR_INDEX") == 99
    await tb.pulse(done=1)
    assert await tb.read("STATUS") == DONE | ERROR
    assert not dut.core_abort.value


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def soft_reset_clears_the_run_but_not_the_settings(dut) -> None:
    tb = TB(dut)
    await tb.reset()
    await tb.write("INSTR_BASE", 0x8000)
    await tb.write("CONTROL", 1)
    await tb.pulse(retired_load=1, error=1, error_code=ErrorCode.OPERAND)
    watch = Watch(dut, ("soft_reset", "start"))
    await tb.write("CONTROL", 2)
    assert len(watch.seen["soft_reset"]) == 1
    assert await tb.read("STATUS") == 0
    assert await tb.read("ERROR_CODE") == 0
    assert await tb.read64("RETIRED_LOAD") == 0
    assert await tb.read64("CYCLES") == 0
    assert await tb.read("INSTR_BASE") == 0x8000
    # START and SOFT_RESET together: the reset wins.
    await tb.write("CONTROL", 3)
    assert await tb.read("STATUS") == 0
    assert watch.seen["start"] == []
