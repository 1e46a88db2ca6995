"""The simulation side of the ``rtl`` backend: a cocotb test that serves the driver.

Started by `gemmstone.driver.backends.rtl` inside the Verilator process. It connects to the
driver's Unix socket (``GEMMSTONE_RTL_SOCKET``), says hello with its process ID, and then
executes requests (`rtl_link.Op`) until told to close or the driver goes away: register
reads and writes through cocotbext-axi's `AxiLiteMaster`, bulk memory reads and writes
through the memory model, and "run N cycles". Simulated time advances only while a request
is served, so an idle driver costs no simulation.

The memory model is a seam: `AxiRamMemory` (cocotbext-axi's `AxiRam` on ``m_axi``) works
with the plain accelerator top; a model inside the simulation (no Python per beat) plugs in
as another class with the same ``read``/``write`` methods.

Import this module only inside a cocotb simulation.
"""

from __future__ import annotations

import os
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from gemmstone.driver.backends.rtl_link import (
    STATUS_FAILED,
    STATUS_OK,
    LinkClosedError,
    Op,
    receive,
    send,
)

PERIOD_NS = 10


class AxiRamMemory:
    """DRAM as cocotbext-axi's `AxiRam` on the top's ``m_axi`` port (Python per beat)."""

    def __init__(self, dut, size: int) -> None:
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=size)

    async def read(self, address: int, size: int) -> bytes:
        return bytes(self.ram.read(address, size))

    async def write(self, address: int, data: bytes) -> None:
        self.ram.write(address, data)


MEMORIES = {"axiram": AxiRamMemory}


async def _serve(dut, link: socket.socket, regs: AxiLiteMaster, memory) -> None:
    while True:
        try:
            op, a, b, payload = receive(link, payload_in_b=False)
        except LinkClosedError:
            return  # the driver went away: end the simulation
        value, data = 0, b""
        try:
            if op == Op.READ_REG:
                value = await regs.read_dword(a)
            elif op == Op.WRITE_REG:
                await regs.write_dword(a, b)
            elif op == Op.READ_MEM:
                data = await memory.read(a, b)
            elif op == Op.WRITE_MEM:
                await memory.write(a, payload)
            elif op == Op.RUN:
                await ClockCycles(dut.clk, max(1, a))
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
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    memory = MEMORIES[os.environ["GEMMSTONE_RTL_MEMORY"]](
        dut, int(os.environ["GEMMSTONE_RTL_MEMORY_BYTES"]))
    regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
        link.connect(os.environ["GEMMSTONE_RTL_SOCKET"])
        send(link, Op.HELLO, os.getpid())
        await _serve(dut, link, regs, memory)
