"""The simulation side of the ``rtl`` backend under cocotb (``harness="cocotb"``; the
default native server is `rtl_native`): a cocotb test that serves the driver.

Started by `gemmstone.driver.backends.rtl` inside the Verilator process. It connects to the
driver's Unix socket (``GEMMSTONE_RTL_SOCKET``), says hello with its process ID, and then
executes requests (`rtl_link.Op`) until told to close or the driver goes away: register
reads and writes through cocotbext-axi's `AxiLiteMaster`, bulk memory reads and writes
through the memory model, and "run N cycles". Simulated time advances only while a request
is served, so an idle driver costs no simulation.

Two memory models (``GEMMSTONE_RTL_MEMORY``), each with the top it needs:

- ``dram`` (`SimDramTarget`): `gemmstone.hw.sim_top.SimTop`, the accelerator
  with the DRAM model inside the simulation, driven by `gemmstone.hw.sim_bench.SimTopBench`.
  No Python runs per cycle or per beat: the clock is cocotb's C++ clock, memory moves in
  and out as one binary file per request (one clock edge each), and a RUN request is one
  timer, cut short by the top's ``busy`` output falling when a run in progress ends.
- ``axi-ram`` (`AxiRamTarget`): the plain accelerator top with cocotbext-axi's `AxiRam` on
  ``m_axi`` and cocotb's Python clock (Python per beat and per cycle; about 10x slower:
  benchmarks/rtl_backend_speed.py).
  Kept to compare against and to cross-check the DRAM model.

Import this module only inside a cocotb simulation.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from gemmstone.driver.backends.rtl_link import (
    STATUS_FAILED,
    STATUS_OK,
    LinkClosedError,
    Op,
    receive,
    send,
)
from gemmstone.hw.sim_bench import PERIOD_NS, SimTopBench


class AxiRamTarget:
    """The plain accelerator top: cocotbext-axi's `AxiRam` on ``m_axi`` (Python per beat)
    and cocotb's Python clock."""

    def __init__(self, dut, *, size: int, workdir: Path, data_bytes: int,
                 latency: int) -> None:
        self.dut = dut
        Clock(dut.clk, PERIOD_NS, unit="ns").start()
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=size)
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 5)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def read_reg(self, offset: int) -> int:
        return await self.regs.read_dword(offset)

    async def write_reg(self, offset: int, value: int) -> None:
        await self.regs.write_dword(offset, value)

    async def read_mem(self, address: int, size: int) -> bytes:
        return bytes(self.ram.read(address, size))

    async def write_mem(self, address: int, data: bytes) -> None:
        self.ram.write(address, data)

    async def run(self, cycles: int) -> None:
        await ClockCycles(self.dut.clk, max(1, cycles))


class SimDramTarget:
    """`gemmstone.hw.sim_top.SimTop`: the DRAM model inside the simulation (no Python per
    cycle or beat); memory moves through one scratch file in ``workdir``."""

    def __init__(self, dut, *, size: int, workdir: Path, data_bytes: int,
                 latency: int) -> None:
        self.dut = dut
        self.bench = SimTopBench(dut, data_bytes=data_bytes)
        self.bench.set_dram(latency=latency, rate=0)
        self.size = size
        self.scratch = str(workdir / "dram.bin")

    async def reset(self) -> None:
        await self.bench.reset()

    async def read_reg(self, offset: int) -> int:
        return await self.bench.regs.read_dword(offset)

    async def write_reg(self, offset: int, value: int) -> None:
        await self.bench.regs.write_dword(offset, value)

    def _check(self, address: int, size: int) -> None:
        if address < 0 or address + size > self.size:
            raise ValueError(f"[{address:#x}, {address + size:#x}) is outside the "
                             f"{self.size:#x} bytes of simulated DRAM")

    async def read_mem(self, address: int, size: int) -> bytes:
        self._check(address, size)
        return await self.bench.read_memory(address, size, self.scratch)

    async def write_mem(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        await self.bench.write_memory(address, data, self.scratch)

    async def run(self, cycles: int) -> None:
        """Simulate ``cycles`` cycles, or fewer when a run in progress ends (the top's
        ``busy`` output falls): the driver polls next anyway. The clock runs in C++ and
        Python wakes once, at whichever comes first."""
        delay = Timer(max(1, cycles) * PERIOD_NS, unit="ns")
        if self.dut.busy.value:
            await First(delay, FallingEdge(self.dut.busy))
        else:
            await delay


TARGETS = {"dram": SimDramTarget, "axi-ram": AxiRamTarget}


async def _serve(link: socket.socket, target) -> None:
    while True:
        try:
            op, a, b, payload = receive(link, payload_in_b=False)
        except LinkClosedError:
            return  # the driver went away: end the simulation
        value, data = 0, b""
        try:
            if op == Op.READ_REG:
                value = await target.read_reg(a)
            elif op == Op.WRITE_REG:
                await target.write_reg(a, b)
            elif op == Op.READ_MEM:
                data = await target.read_mem(a, b)
            elif op == Op.WRITE_MEM:
                await target.write_mem(a, payload)
            elif op == Op.RUN:
                await target.run(a)
            elif op == Op.CLOSE:
                send(link, STATUS_OK)
                return
            else:
                raise ValueError(f"unknown request {op}")
        except Exception as error:  # every failure goes back to the driver
            send(link, STATUS_FAILED, 0, *_payload(f"{type(error).__name__}: {error}"))
            continue
        send(link, STATUS_OK, value, len(data), data)


def _payload(message: str) -> tuple[int, bytes]:
    data = message.encode()
    return len(data), data


@cocotb.test()
async def serve_driver(dut):
    """Serve the driver on the socket named by GEMMSTONE_RTL_SOCKET until it closes."""
    environ = os.environ
    target = TARGETS[environ["GEMMSTONE_RTL_MEMORY"]](
        dut, size=int(environ["GEMMSTONE_RTL_MEMORY_BYTES"]),
        workdir=Path(environ["GEMMSTONE_RTL_WORKDIR"]),
        data_bytes=int(environ["GEMMSTONE_RTL_DATA_BYTES"]),
        latency=int(environ["GEMMSTONE_RTL_LATENCY"]))
    await target.reset()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
        link.connect(environ["GEMMSTONE_RTL_SOCKET"])
        send(link, Op.HELLO, os.getpid())
        await _serve(link, target)
