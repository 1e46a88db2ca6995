"""The cocotb side of `gemmstone.hw.sim_top`: drives a Verilated `SimTop`.

`SimTopBench` owns the clock, reset, the register master (cocotbext-axi's `AxiLiteMaster`
on ``s_axil``) and the DRAM model's controls. Nothing of it wakes per cycle: the clock is
cocotb's C++ clock, the register master sleeps until used, a DRAM image moves in or out
in one clock edge (binary ``$fread`` / ``$fwrite`` in the model), and the end of a run is
one trigger on the top's ``busy`` output falling. `play_runs` is the cocotb test
`sim_top.run_programs` starts: it plays the runs of the pickle named by
``GEMMSTONE_SIM_RUNS`` and writes the results to the file named by
``GEMMSTONE_SIM_RESULTS``.

Import this module only inside a cocotb simulation.
"""

from __future__ import annotations

import os
import pickle
import time

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from gemmstone.hw.register_map import BY_NAME, REGISTERS, STATUS_BUSY, Kind
from gemmstone.hw.sim_dram import file_port_value, read_image, write_image

__all__ = ["SimTopBench", "play_runs"]

PERIOD_NS = 10


class SimTopBench:
    """Clock, reset, registers and DRAM access of a `gemmstone.hw.sim_top.SimTop`.

    Parameters
    ----------
    dut
        The cocotb handle of the Verilated ``gemmstone_sim_top``.
    data_bytes : int
        The DRAM bus width (``config.dram_bytes_per_cycle``): the word size of loads and
        dumps.
    """

    def __init__(self, dut, *, data_bytes: int) -> None:
        self.dut = dut
        self.data_bytes = data_bytes
        # The C++ clock: the default Python one runs a coroutine every half period.
        Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for name in ("dram_load", "dram_dump", "dram_rate", "dram_first", "dram_last"):
            getattr(dut, name).value = 0
        dut.dram_latency.value = 20

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_dram(self, *, latency: int, rate: int) -> None:
        """Latency (cycles) and shared bandwidth (bytes per cycle, 0 = unthrottled)."""
        self.dut.dram_latency.value = latency
        self.dut.dram_rate.value = rate

    async def _dram_file_op(self, signal, path: str, first: int, last: int) -> None:
        self.dut.dram_file.value = file_port_value(path)
        self.dut.dram_first.value = first
        self.dut.dram_last.value = last
        signal.value = 1
        await RisingEdge(self.dut.clk)
        signal.value = 0
        await RisingEdge(self.dut.clk)

    async def load(self, path: str, first: int, last: int) -> None:
        """Load words ``first..last`` of DRAM from the image file ``path``."""
        await self._dram_file_op(self.dut.dram_load, path, first, last)

    async def dump(self, path: str, first: int, last: int) -> None:
        """Dump words ``first..last`` of DRAM to the file ``path``."""
        await self._dram_file_op(self.dut.dram_dump, path, first, last)

    async def write_memory(self, address: int, data: bytes, path: str) -> None:
        """Write ``data`` to DRAM at byte ``address``, through the scratch file ``path``.
        Words only partly covered are read back first, so their other bytes stay."""
        if not data:
            return
        size = self.data_bytes
        first, last = address // size, (address + len(data) - 1) // size
        words = bytearray((last - first + 1) * size)
        if address % size or (address + len(data)) % size:
            await self.dump(path, first, last)
            words[:] = read_image(path, data_bytes=size, words=last - first + 1)
        offset = address - first * size
        words[offset:offset + len(data)] = data
        write_image(path, bytes(words), data_bytes=size)
        await self.load(path, first, last)

    async def read_memory(self, address: int, length: int, path: str) -> bytes:
        """``length`` bytes of DRAM from byte ``address``, through the scratch file ``path``."""
        if length <= 0:
            return b""
        size = self.data_bytes
        first, last = address // size, (address + length - 1) // size
        await self.dump(path, first, last)
        words = read_image(path, data_bytes=size, words=last - first + 1)
        offset = address - first * size
        return words[offset:offset + length]

    async def read(self, name: str) -> int:
        """A register by name (64-bit counters read low half first, as the map says)."""
        register = BY_NAME[name]
        low = await self.regs.read_dword(register.offset)
        if register.width == 32:
            return low
        return low | (await self.regs.read_dword(register.offset + 4)) << 32

    async def write(self, name: str, value: int) -> None:
        await self.regs.write_dword(BY_NAME[name].offset, value)

    async def wait_idle(self, max_cycles: int) -> None:
        """Wait until the run in progress ends: one trigger on the top's ``busy`` output
        falling (or ``max_cycles`` passing), then one STATUS read to confirm.

        Raises
        ------
        TimeoutError
            If the accelerator is still busy after ``max_cycles``.
        """
        if self.dut.busy.value:
            # Python wakes once, at the end of the run: no polling.
            await First(FallingEdge(self.dut.busy), Timer(max_cycles * PERIOD_NS, unit="ns"))
        if (await self.read("STATUS")) & (1 << STATUS_BUSY.lsb):
            raise TimeoutError(f"the accelerator is still busy after {max_cycles} cycles")

    async def registers(self) -> dict[str, int]:
        """Every status, counter and constant register, by name."""
        return {register.name: await self.read(register.name) for register in REGISTERS
                if register.kind in (Kind.STATUS, Kind.COUNTER, Kind.CONSTANT)}

    async def run(self, run: dict) -> dict:
        """Play one run of `sim_top.run_programs`' plan; return its results entry."""
        started = time.perf_counter()
        start_ns = get_sim_time(unit="ns")
        self.set_dram(latency=run["latency"], rate=run["rate"])
        await self.load(run["image_file"], 0, run["image_words"] - 1)
        for name in ("INSTR_BASE", "INSTR_COUNT", "WINDOW_BASE", "WINDOW_LIMIT", "WATCHDOG"):
            await self.write(name, run[name.lower()])
        run_started, run_start_ns = time.perf_counter(), get_sim_time(unit="ns")
        cpu_started = time.process_time()
        await self.write("CONTROL", 1)
        try:
            await self.wait_idle(run["max_cycles"])
        except TimeoutError as error:
            raise AssertionError(f"run {run['name']}: {error}") from None
        run_seconds = time.perf_counter() - run_started
        run_cpu_seconds = time.process_time() - cpu_started
        run_cycles = round((get_sim_time(unit="ns") - run_start_ns) / PERIOD_NS)
        registers = await self.registers()
        await self.dump(run["dump_file"], run["dump_first"], run["dump_last"])
        return {"name": run["name"], "registers": registers,
                "wall_seconds": time.perf_counter() - started,
                "sim_cycles": round((get_sim_time(unit="ns") - start_ns) / PERIOD_NS),
                "run_seconds": run_seconds, "run_cycles": run_cycles,
                "run_cpu_seconds": run_cpu_seconds,
                "dram_error": bool(self.dut.dram_error.value)}


@cocotb.test()
async def play_runs(dut):
    """Play the runs named by GEMMSTONE_SIM_RUNS; results to GEMMSTONE_SIM_RESULTS."""
    with open(os.environ["GEMMSTONE_SIM_RUNS"], "rb") as handle:
        runs = pickle.load(handle)
    results = []
    if runs:
        bench = SimTopBench(dut, data_bytes=runs[0]["data_bytes"])
        await bench.reset()
        for run in runs:
            results.append(await bench.run(run))
    with open(os.environ["GEMMSTONE_SIM_RESULTS"], "wb") as handle:
        pickle.dump(results, handle)
