"""cocotb tests of `DmaReader` and `DmaWriter` on Verilator (run by test_dma.py).

The DUT is test_dma.DmaTop: a reader and a writer sharing one AXI4 port ``m_axi``, bound to
cocotbext-axi's `AxiRam`; command and line streams are driven and taken by cocotbext-axi's
generic stream models. Every line read is compared with numpy slicing of the RAM, and after
writes the whole RAM is compared with a numpy model. The line and bus widths are read from
the port widths, so one module serves every configuration. Bandwidth figures go to the JSON
file named by ``GEMMSTONE_DMA_REPORT``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiRam, AxiSlave
from cocotbext.axi.stream import define_stream

from gemmstone.hw.dma import command_layout

LineBus, LineTransaction, LineSource, LineSink, _ = define_stream(
    "AmaranthStream", signals=["payload", "valid", "ready"])

RAM_BYTES = 1 << 16
PERIOD_NS = 10
MAX_LINES = 50


@dataclass(frozen=True)
class Command:
    addr: int
    stride: int
    n: int
    len: int

    def line_addresses(self) -> list[int]:
        return [self.addr + i * self.stride for i in range(self.n)]


def _random_pauses(rng: random.Random, probability: float):
    while True:
        yield rng.random() < probability


def _bits(value) -> int:
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class TB:
    """Clock, reset, the AXI memory model and the four stream models of one test."""

    def __init__(self, dut, *, rng: random.Random, pause: float = 0.0, target=None) -> None:
        self.dut = dut
        self.line_bytes = (len(dut.rd_lines_payload) - 1) // 8
        self.data_bytes = len(dut.m_axi_rdata) // 8
        self.layout = command_layout(line_bytes=self.line_bytes)
        Clock(dut.clk, PERIOD_NS, unit="ns").start()
        bus = AxiBus.from_prefix(dut, "m_axi")
        if target is None:
            self.ram = AxiRam(bus, dut.clk, dut.rst, size=RAM_BYTES)
        else:
            self.ram = AxiSlave(bus, dut.clk, dut.rst, target=target)
        self.rd_cmd = LineSource(LineBus.from_prefix(dut, "rd_cmd"), dut.clk, dut.rst)
        self.rd_lines = LineSink(LineBus.from_prefix(dut, "rd_lines"), dut.clk, dut.rst)
        self.wr_cmd = LineSource(LineBus.from_prefix(dut, "wr_cmd"), dut.clk, dut.rst)
        self.wr_lines = LineSource(LineBus.from_prefix(dut, "wr_lines"), dut.clk, dut.rst)
        if pause:
            read_if, write_if = self.ram.read_if, self.ram.write_if
            for channel in (read_if.ar_channel, read_if.r_channel, write_if.aw_channel,
                            write_if.w_channel, write_if.b_channel, self.rd_lines,
                            self.wr_lines, self.rd_cmd, self.wr_cmd):
                channel.set_pause_generator(_random_pauses(rng, pause))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def pack(self, command: Command) -> int:
        return self.layout.const({"addr": command.addr, "stride": command.stride,
                                  "n": command.n, "len": command.len}).as_bits()

    async def read(self, command: Command) -> None:
        await self.rd_cmd.send(LineTransaction(payload=self.pack(command)))

    async def write(self, command: Command, lines: list[bytes]) -> None:
        await self.wr_cmd.send(LineTransaction(payload=self.pack(command)))
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            value = int.from_bytes(line, "little") | last << (8 * self.line_bytes)
            await self.wr_lines.send(LineTransaction(payload=value))

    async def receive_line(self) -> tuple[bytes, bool]:
        value = _bits((await self.rd_lines.recv()).payload)
        data = (value & ((1 << 8 * self.line_bytes) - 1)).to_bytes(self.line_bytes, "little")
        return data, bool(value >> 8 * self.line_bytes)

    async def wait_idle(self, signal, limit: int = 100_000) -> int:
        """Cycles until ``signal`` (a busy output) is low; fails after ``limit``."""
        for cycle in range(limit):
            await RisingEdge(self.dut.clk)
            if not signal.value:
                return cycle
        raise AssertionError(f"{signal._name} still high after {limit} cycles")


def random_command(rng: random.Random, line_bytes: int, *, max_lines: int = MAX_LINES,
                   memory: int = RAM_BYTES) -> Command:
    """A command with an unaligned address, a stride from 0 (every line the same) through
    overlapping, contiguous and gapped lines to strides crossing 4 KiB pages, a length from
    1 to the line width (0 now and then), and 0 to ``max_lines`` lines."""
    length = rng.choice([line_bytes, rng.randint(1, line_bytes), rng.randint(1, line_bytes),
                         0 if rng.random() < 0.1 else 1])
    span = max(length, 1)
    stride = rng.choice([0, rng.randint(1, span), span, rng.randint(span, 4 * span + 7),
                         rng.randint(1, 5000) | 1])
    n = 0 if rng.random() < 0.05 else rng.randint(1, max_lines)
    while n > 1 and (n - 1) * stride + line_bytes >= memory:
        n //= 2
    addr = rng.randrange(memory - (max(n - 1, 0) * stride + line_bytes))
    return Command(addr=addr, stride=stride, n=n, len=length)


def expected_lines(memory: np.ndarray, command: Command, line_bytes: int) -> list[bytes]:
    length = min(command.len, line_bytes)
    out = []
    for address in command.line_addresses():
        line = np.zeros(line_bytes, dtype=np.uint8)
        line[:length] = memory[address:address + length]
        out.append(line.tobytes())
    return out


def _report(key: str, value: dict) -> None:
    path = os.environ.get("GEMMSTONE_DMA_REPORT")
    if not path:
        return
    report = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    report[key] = value
    Path(path).write_text(json.dumps(report, indent=2))


@cocotb.test(timeout_time=20, timeout_unit="ms")
@cocotb.parametrize(pause=[0.0, 0.3])
async def reads_match_numpy(dut, pause: float) -> None:
    rng = random.Random(f"{cocotb.RANDOM_SEED}-reads-{pause}")
    tb = TB(dut, rng=rng, pause=pause)
    memory = np.frombuffer(rng.randbytes(RAM_BYTES), dtype=np.uint8)
    tb.ram.write(0, memory.tobytes())
    await tb.reset()
    commands = [random_command(rng, tb.line_bytes) for _ in range(16)]
    for command in commands:
        await tb.read(command)
    for number, command in enumerate(commands):
        for i, line in enumerate(expected_lines(memory, command, tb.line_bytes)):
            data, last = await tb.receive_line()
            assert data == line, (f"command {number} {command}, line {i}: got {data.hex()}, "
                                  f"expected {line.hex()}")
            assert last == (i == command.n - 1), f"command {number} {command}, line {i}: last"
    await tb.wait_idle(dut.rd_busy)
    for _ in range(20):
        await RisingEdge(dut.clk)
    assert tb.rd_lines.empty(), "the reader delivered more lines than commanded"
    assert not dut.rd_error.value


@cocotb.test(timeout_time=20, timeout_unit="ms")
@cocotb.parametrize(pause=[0.0, 0.3])
async def writes_match_numpy(dut, pause: float) -> None:
    rng = random.Random(f"{cocotb.RANDOM_SEED}-writes-{pause}")
    tb = TB(dut, rng=rng, pause=pause)
    memory = np.frombuffer(rng.randbytes(RAM_BYTES), dtype=np.uint8).copy()
    tb.ram.write(0, memory.tobytes())
    await tb.reset()
    for _ in range(16):
        command = random_command(rng, tb.line_bytes)
        lines = [rng.randbytes(tb.line_bytes) for _ in range(command.n)]
        length = min(command.len, tb.line_bytes)
        for address, line in zip(command.line_addresses(), lines, strict=True):
            memory[address:address + length] = np.frombuffer(line[:length], dtype=np.uint8)
        await tb.write(command, lines)
    await tb.wr_lines.wait()
    await tb.wait_idle(dut.wr_busy)
    ram = np.frombuffer(tb.ram.read(0, RAM_BYTES), dtype=np.uint8)
    wrong = np.flatnonzero(ram != memory)
    assert wrong.size == 0, (f"{wrong.size} bytes differ, first at {wrong[0]:#x}: "
                             f"{ram[wrong[0]]:#x} != {memory[wrong[0]]:#x}")
    assert not dut.wr_error.value


async def _time_reads(tb: TB, command: Command) -> int:
    start = get_sim_time("ns")
    await tb.read(command)
    for _ in range(command.n):
        await tb.receive_line()
    return round((get_sim_time("ns") - start) / PERIOD_NS)


async def _time_writes(tb: TB, command: Command) -> int:
    lines = [bytes(tb.line_bytes)] * command.n
    start = get_sim_time("ns")
    await tb.write(command, lines)
    await tb.wr_lines.wait()
    await tb.wait_idle(tb.dut.wr_busy)
    return round((get_sim_time("ns") - start) / PERIOD_NS)


def _beats(command: Command, line_bytes: int, data_bytes: int) -> int:
    length = max(1, min(command.len, line_bytes))
    return sum((a % data_bytes + length - 1) // data_bytes + 1
               for a in command.line_addresses())


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def bandwidth(dut) -> None:
    """Beats per cycle for long commands: aligned contiguous lines (the compiler's usual
    case), unaligned contiguous lines, and unaligned lines at an odd stride."""
    rng = random.Random(cocotb.RANDOM_SEED)
    tb = TB(dut, rng=rng)
    await tb.reset()
    size, width = tb.line_bytes, tb.data_bytes
    cases = {
        "aligned": Command(addr=0x1000, stride=size, n=256, len=size),
        "unaligned": Command(addr=0x1003, stride=size, n=256, len=size),
        "odd_stride": Command(addr=0x1001, stride=3 * size + 5, n=256, len=size),
    }
    figures = {}
    for name, command in cases.items():
        beats = _beats(command, size, width)
        read_cycles = await _time_reads(tb, command)
        write_cycles = await _time_writes(tb, command)
        useful = command.n * size / width
        figures[name] = {
            "beats": beats,
            "read_cycles": read_cycles, "read_beats_per_cycle": beats / read_cycles,
            "read_useful_beats_per_cycle": useful / read_cycles,
            "write_cycles": write_cycles, "write_beats_per_cycle": beats / write_cycles,
            "write_useful_beats_per_cycle": useful / write_cycles,
        }
        dut._log.info("%s: %s", name, figures[name])
    _report(f"L{size}_B{width}", figures)
    # The reader and writer themselves run a beat per cycle; what is lost is the start-up
    # latency and the memory model's turnaround between bursts.
    for name, figure in figures.items():
        assert figure["read_beats_per_cycle"] > 0.8, f"{name}: {figure}"
        assert figure["write_beats_per_cycle"] > 0.8, f"{name}: {figure}"


class FaultyMemory:
    """A memory target for cocotbext-axi's `AxiSlave` that fails every access touching
    ``[bad, bad + size)``: the slave then answers SLVERR."""

    def __init__(self, size: int, bad: int, bad_size: int) -> None:
        self.data = bytearray(size)
        self.bad = range(bad, bad + bad_size)

    def _check(self, address: int, length: int) -> None:
        if address < self.bad.stop and self.bad.start < address + length:
            raise ValueError(f"injected fault at {address:#x}")

    async def read(self, address: int, length: int) -> bytes:
        self._check(address, length)
        return bytes(self.data[address:address + length])

    async def write(self, address: int, data: bytes) -> None:
        self._check(address, len(data))
        self.data[address:address + len(data)] = data


async def _count_pulses(dut, signal, cycles: int) -> int:
    pulses = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
        pulses += bool(signal.value)
    return pulses


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def slave_errors_are_reported(dut) -> None:
    """A failing beat raises ``error`` once and leaves its line's (read) or burst's (write)
    address in ``error_addr``; the command still completes."""
    rng = random.Random(cocotb.RANDOM_SEED)
    width = len(dut.m_axi_rdata) // 8
    bad = 0x2000 + 4 * width  # one bus beat
    target = FaultyMemory(RAM_BYTES, bad, width)
    tb = TB(dut, rng=rng, target=target)
    await tb.reset()
    stride = 2 * width  # lines never share a beat
    length = min(width, tb.line_bytes)
    command = Command(addr=bad - 2 * stride, stride=stride, n=5, len=length)
    read_pulses = cocotb.start_soon(_count_pulses(dut, dut.rd_error, 400))
    await tb.read(command)
    for _ in range(command.n):
        await tb.receive_line()
    assert await read_pulses == 1
    assert dut.rd_error_addr.value.to_unsigned() == bad

    write_pulses = cocotb.start_soon(_count_pulses(dut, dut.wr_error, 400))
    await tb.write(command, [bytes(range(tb.line_bytes))] * command.n)
    assert await write_pulses == 1
    assert dut.wr_error_addr.value.to_unsigned() == bad
    assert not dut.wr_busy.value
