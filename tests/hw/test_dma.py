# amaranth: UnusedElaboratable=no
"""DMA reader and writer: burst splitting in Amaranth's simulator against a Python model,
and the whole engine on Verilator with cocotbext-axi's AxiRam (cocotb_dma.py).

Each (line width, bus width) pair is one Verilator build: tens of seconds cold, cached after.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from gemmstone.hw.axi import AxiLiteSignature, AxiReadSignature, AxiSignature, flat_port_names
from gemmstone.hw.dma import BurstPlanner, DmaReader, DmaWriter, command_layout, line_layout
from gemmstone.hw.sim_build import build_verilated

HERE = Path(__file__).parent


class DmaTop(wiring.Component):
    """A reader and a writer on one AXI4 port: the DUT of cocotb_dma.py."""

    def __init__(self, *, line_bytes: int, data_bytes: int) -> None:
        self.reader = DmaReader(line_bytes=line_bytes, data_bytes=data_bytes)
        self.writer = DmaWriter(line_bytes=line_bytes, data_bytes=data_bytes)
        commands = stream.Signature(command_layout(line_bytes=line_bytes))
        lines = stream.Signature(line_layout(line_bytes))
        super().__init__({
            "rd_cmd": In(commands), "rd_lines": Out(lines), "rd_busy": Out(1),
            "rd_error": Out(1), "rd_error_addr": Out(32),
            "wr_cmd": In(commands), "wr_lines": In(lines), "wr_busy": Out(1),
            "wr_error": Out(1), "wr_error_addr": Out(32),
            "m_axi": Out(AxiSignature(data_bytes=data_bytes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        for prefix, dma in (("rd", reader), ("wr", writer)):
            wiring.connect(m, wiring.flipped(getattr(self, f"{prefix}_cmd")), dma.cmd)
            for name in ("busy", "error", "error_addr"):
                m.d.comb += getattr(self, f"{prefix}_{name}").eq(getattr(dma, name))
            for name, member in dma.axi.signature.members.items():
                ours, theirs = getattr(self.m_axi, name), getattr(dma.axi, name)
                m.d.comb += (ours.eq(theirs) if member.flow == Out else theirs.eq(ours))
        wiring.connect(m, reader.lines, wiring.flipped(self.rd_lines))
        wiring.connect(m, wiring.flipped(self.wr_lines), writer.lines)
        return m


def dma_verilog(*, line_bytes: int, data_bytes: int) -> str:
    top = DmaTop(line_bytes=line_bytes, data_bytes=data_bytes)
    return verilog.convert(top, name="dma_top", ports=flat_port_names(top), emit_src=False)


# (line bytes, bus bytes): a scratchpad line as wide as the bus (8x8, 8 B/cycle), an
# accumulator row of several beats (8 int32 on a 4-byte bus), a bus wider than the line.
CONFIGS = [(8, 8), (32, 4), (4, 16)]
# Slow tier: the 16x16 preset's line and accumulator row, a line that is not a power of two
# on a 2-byte bus, and a 1-byte bus.
SLOW_CONFIGS = [(16, 16), (64, 16), (20, 2), (8, 1)]


@pytest.mark.parametrize(("line_bytes", "data_bytes"), [
    *CONFIGS, *(pytest.param(*c, marks=pytest.mark.slow) for c in SLOW_CONFIGS)])
def test_dma_on_verilator_matches_numpy(line_bytes, data_bytes, tmp_path):
    model = build_verilated(dma_verilog(line_bytes=line_bytes, data_bytes=data_bytes),
                            toplevel="dma_top")
    report = tmp_path / "bandwidth.json"
    tests = model.run_cocotb("cocotb_dma", module_dir=HERE, test_dir=tmp_path, seed=2024,
                             extra_env={"GEMMSTONE_DMA_REPORT": str(report)})
    assert {test.name.split("/")[0] for test in tests} >= {
        "reads_match_numpy", "writes_match_numpy", "bandwidth", "slave_errors_are_reported"}
    figures = json.loads(report.read_text())[f"L{line_bytes}_B{data_bytes}"]
    assert figures["aligned"]["read_beats_per_cycle"] > 0.8


# -- burst splitting, in Amaranth's simulator -------------------------------------------------

def reference_bursts(addr, stride, n, length, *, line_bytes, data_bytes):
    """The bursts a command needs: (aligned address, beats) per burst, line by line."""
    length = min(max(length, 1), line_bytes)
    bursts = []
    for i in range(n):
        start = (addr + i * stride) % (1 << 32)
        beat = start - start % data_bytes
        beats = (start % data_bytes + length - 1) // data_bytes + 1
        while beats:
            to_page = (4096 - beat % 4096) // data_bytes
            count = min(beats, to_page, 256)
            bursts.append((beat, count))
            beat = (beat + count * data_bytes) % (1 << 32)
            beats -= count
    return bursts


def run_planner(commands, *, line_bytes, data_bytes, ready_probability=0.7, seed=0):
    dut = BurstPlanner(line_bytes=line_bytes, data_bytes=data_bytes)
    rng = random.Random(seed)
    expected = [b for c in commands
                for b in reference_bursts(*c, line_bytes=line_bytes, data_bytes=data_bytes)]
    seen = []

    async def driver(ctx):
        for addr, stride, n, length in commands:
            ctx.set(dut.cmd.payload, {"addr": addr, "stride": stride, "n": n, "len": length})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)

    async def receiver(ctx):
        cycles = 0
        while len(seen) < len(expected) and cycles < 20_000:
            ready = rng.random() < ready_probability
            ctx.set(dut.bursts.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.bursts.valid,
                                                           dut.bursts.payload)
            if valid and ready:
                seen.append((payload.addr, payload.arlen + 1))
            cycles += 1
        for _ in range(5):
            await ctx.tick()
            assert not ctx.get(dut.bursts.valid), "a burst more than the commands need"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(receiver)
    sim.run()
    return seen, expected


@pytest.mark.parametrize(("line_bytes", "data_bytes"), [(512, 1), (16, 4), (4, 16)])
def test_bursts_split_at_pages_and_256_beats(line_bytes, data_bytes):
    rng = random.Random(line_bytes)
    commands = [
        (4096 - 3, 0, 1, line_bytes),             # straddles a page
        (0x10000 - 200, 4096 + 7, 3, line_bytes),  # every line straddles a page
        (0xFFFF_FFFF - 2, 1, 2, line_bytes),      # wraps at 2**32
        (12, 5, 0, line_bytes),                   # n = 0: nothing
        (100, 0, 3, 0),                           # len = 0: one beat per line
        (100, 9, 2, line_bytes + 1),              # over-long: as line_bytes
    ]
    commands += [(rng.randrange(1 << 32), rng.randrange(1 << 13), rng.randint(1, 4),
                  rng.randint(1, line_bytes)) for _ in range(6)]
    seen, expected = run_planner(commands, line_bytes=line_bytes, data_bytes=data_bytes)
    assert seen == expected
    assert any(count == 256 for _, count in seen) == (line_bytes // data_bytes > 256)


def test_planner_takes_back_to_back_commands_without_bubbles():
    commands = [(64 * i, 8, 4, 8) for i in range(8)]
    dut = BurstPlanner(line_bytes=8, data_bytes=8)
    cycles_with_burst = []

    async def driver(ctx):
        for addr, stride, n, length in commands:
            ctx.set(dut.cmd.payload, {"addr": addr, "stride": stride, "n": n, "len": length})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)

    async def receiver(ctx):
        ctx.set(dut.bursts.ready, 1)
        for cycle in range(60):
            _, _, valid = await ctx.tick().sample(dut.bursts.valid)
            if valid:
                cycles_with_burst.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(receiver)
    sim.run()
    assert len(cycles_with_burst) == 32
    assert cycles_with_burst[-1] - cycles_with_burst[0] == 31  # one burst every cycle


# -- parameters and ports ----------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"line_bytes": 0}, ValueError, "'line_bytes' must be at least 1, not 0"),
    ({"line_bytes": 8.0}, TypeError, "'line_bytes' must be an integer, not 8.0"),
    ({"data_bytes": 12}, ValueError, "'data_bytes' must be a power of two, not 12"),
    ({"data_bytes": 256}, ValueError, "'data_bytes' must be at most 128 (AXI4), not 256"),
    ({"addr_width": 8}, ValueError, "'addr_width' must be at least 12, not 8"),
    ({"axi_id": 2}, ValueError, "'axi_id' 2 does not fit in id_width=1 bits"),
    ({"max_in_flight": 1}, ValueError, "'max_in_flight' must be at least 2, not 1"),
])
@pytest.mark.parametrize("component", [DmaReader, DmaWriter])
def test_bad_parameters_are_named(component, kwargs, error, message):
    with pytest.raises(error) as info:
        component(**{"line_bytes": 8, "data_bytes": 8, **kwargs})
    assert str(info.value) == message


def test_axi_ports_are_named_for_cocotbext_axi():
    names = set(flat_port_names(DmaTop(line_bytes=8, data_bytes=8)))
    for channel in ("ar", "aw"):
        assert {f"m_axi_{channel}{s}" for s in ("id", "addr", "len", "size", "burst", "valid",
                                                 "ready")} <= names
    assert {"m_axi_wdata", "m_axi_wstrb", "m_axi_wlast", "m_axi_bresp", "m_axi_rdata",
            "m_axi_rlast", "m_axi_rresp", "rd_cmd_payload", "rd_lines_valid"} <= names


def test_axi_signatures_compare_by_shape():
    assert AxiReadSignature(data_bytes=8) == AxiReadSignature(data_bytes=8, addr_width=32)
    assert AxiReadSignature(data_bytes=8) != AxiReadSignature(data_bytes=4)
    assert AxiSignature(data_bytes=8) != AxiReadSignature(data_bytes=8)
    assert AxiLiteSignature(addr_width=8) == AxiLiteSignature(addr_width=8)
    with pytest.raises(ValueError, match=r"^'data_bytes' must be a power of two, not 3$"):
        AxiSignature(data_bytes=3)
