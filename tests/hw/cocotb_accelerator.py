"""cocotb side of the whole-accelerator runs (of test_accelerator.py, test_differential.py and
benchmarks/differential.py, through accelerator_runs.py).

The pytest side writes a pickle of runs (initial memory image, register settings, whether
to stall the buses) to the file named by ``GEMMSTONE_RUNS``; this module plays each run on
the Verilated accelerator through cocotbext-axi's `AxiLiteMaster` (registers) and `AxiRam`
(DRAM), and writes the final memory, status, error registers and counters to the file named
by ``GEMMSTONE_RESULTS``. The comparison with the functional model happens in pytest.
A run still busy after its ``max_cycles`` is recorded with ``hung`` set, and the runs after
it are not played: a core stuck in the middle of a transfer cannot be reset without
breaking the AXI protocol (a soft reset abandons bursts the RAM model has accepted).
"""

from __future__ import annotations

import os
import pickle
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from gemmstone.hw.register_map import (
    BY_NAME,
    CONTROL_START,
    REGISTERS,
    STATUS_BUSY,
    Kind,
)

PERIOD_NS = 10
POLL_CYCLES = 200


def _pauses(rng: random.Random, probability: float):
    while True:
        yield rng.random() < probability


class TB:
    """Clock, reset, register master and DRAM model of the accelerator."""

    def __init__(self, dut, *, ram_bytes: int) -> None:
        self.dut = dut
        Clock(dut.clk, PERIOD_NS, unit="ns").start()
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=ram_bytes)
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def stall(self, rng: random.Random, probability: float) -> None:
        read_if, write_if = self.ram.read_if, self.ram.write_if
        for channel in (read_if.ar_channel, read_if.r_channel, write_if.aw_channel,
                        write_if.w_channel, write_if.b_channel):
            channel.set_pause_generator(_pauses(rng, probability) if probability else None)
            # Removing a generator leaves the channel as its last value left it: unpause.
            channel.pause = False

    async def read(self, name: str) -> int:
        register = BY_NAME[name]
        low = await self.regs.read_dword(register.offset)
        if register.width == 32:
            return low
        return low | (await self.regs.read_dword(register.offset + 4)) << 32

    async def write(self, name: str, value: int) -> None:
        await self.regs.write_dword(BY_NAME[name].offset, value)

    async def run(self, run: dict) -> dict:
        self.ram.write(0, run["ram"])
        for name in ("INSTR_BASE", "INSTR_COUNT", "WINDOW_BASE", "WINDOW_LIMIT", "WATCHDOG"):
            await self.write(name, run[name.lower()])
        await self.write("CONTROL", 1 << CONTROL_START.lsb)
        polls = 0
        hung = False
        while (await self.read("STATUS")) & (1 << STATUS_BUSY.lsb):
            await ClockCycles(self.dut.clk, POLL_CYCLES)
            polls += 1
            if polls * POLL_CYCLES > run["max_cycles"]:
                hung = True
                break
        result = {"name": run["name"], "ram": self.ram.read(0, len(run["ram"])),
                  "hung": hung}
        for register in REGISTERS:
            if register.kind in (Kind.STATUS, Kind.COUNTER, Kind.CONSTANT):
                result[register.name] = await self.read(register.name)
        return result


@cocotb.test()
async def play_runs(dut):
    with open(os.environ["GEMMSTONE_RUNS"], "rb") as handle:
        runs = pickle.load(handle)
    tb = TB(dut, ram_bytes=len(runs[0]["ram"]))
    await tb.reset()
    results = []
    for run in runs:
        tb.stall(random.Random(run["seed"]), run["stall"])
        results.append(await tb.run(run))
        if results[-1]["hung"]:
            break
    with open(os.environ["GEMMSTONE_RESULTS"], "wb") as handle:
        pickle.dump(results, handle)
