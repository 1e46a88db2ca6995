# amaranth: UnusedElaboratable=no
"""The register map (hw/register_map.py), its generated documentation, and the register
block on Verilator driven by cocotbext-axi's AxiLiteMaster (cocotb_registers.py).

One Verilator build (tens of seconds cold, cached after).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape

from gemmstone.config import preset
from gemmstone.hw.axi import flat_port_names
from gemmstone.hw.register_map import (
    BY_NAME,
    REGISTERS,
    Access,
    Kind,
    check_map,
    config_id,
    isa_id,
    render,
    reset_value,
)
from gemmstone.hw.registers import CorePortSignature, RegisterBlock
from gemmstone.hw.sim_build import build_verilated
from gemmstone.isa import isa_hash

HERE = Path(__file__).parent
DOC = HERE.parents[1] / "docs" / "registers.md"
PRESET = "small"


def test_register_block_on_verilator(tmp_path):
    block = RegisterBlock(config=preset(PRESET))
    text = verilog.convert(block, name="registers_top", ports=flat_port_names(block),
                           emit_src=False)
    model = build_verilated(text, toplevel="registers_top")
    tests = model.run_cocotb("cocotb_registers", module_dir=HERE, test_dir=tmp_path,
                             seed=7, extra_env={"GEMMSTONE_REGISTERS_PRESET": PRESET})
    assert len(tests) == 6


def test_committed_register_doc_is_up_to_date():
    assert DOC.read_text() == render(), (
        "docs/registers.md is stale: regenerate it with "
        "`python -m gemmstone.hw.register_map > docs/registers.md`")


def test_module_entry_point_prints_the_doc():
    done = subprocess.run([sys.executable, "-m", "gemmstone.hw.register_map"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == render()


def test_register_map_imports_without_amaranth():
    """The driver reads the map on machines without the hw extra."""
    code = ("import sys, gemmstone.hw.register_map; "
            "assert not [m for m in sys.modules if m.startswith('amaranth')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ids_are_the_hash_prefixes():
    config = preset("base")
    assert config_id(config) == int.from_bytes(bytes.fromhex(config.content_hash)[:4], "big")
    assert isa_id() == int.from_bytes(bytes.fromhex(isa_hash())[:4], "big")
    assert reset_value(BY_NAME["CONFIG_ID"], config) == config_id(config)
    assert config_id(config) != config_id(preset("tiny"))


def _broken(which, **changes):
    return tuple(dataclasses.replace(r, **changes) if r.name == which else r for r in REGISTERS)


@pytest.mark.parametrize(("registers", "message"), [
    (_broken("STATUS", offset=0x010), "registers CONTROL and STATUS overlap at 0x10"),
    (_broken("STATUS", offset=0x015), "register STATUS: offset 0x15 is not aligned or outside "
                                      "the 4096-byte page"),
    (_broken("CYCLES", offset=0x104), "register CYCLES: offset 0x104 is not aligned or "
                                      "outside the 4096-byte page"),
    (_broken("WATCHDOG", offset=0x1000), "register WATCHDOG: offset 0x1000 is not aligned or "
                                         "outside the 4096-byte page"),
    (_broken("CYCLES", width=32), "register CYCLES: counters are 64-bit, others 32-bit"),
    (_broken("STATUS", name="MAGIC"), "two registers have the same name"),
    (_broken("CYCLES", increment="2"), "register CYCLES: unknown increment '2'"),
])
def test_broken_maps_are_rejected(registers, message):
    with pytest.raises(ValueError) as info:
        check_map(registers)
    assert str(info.value) == message


def test_core_ports_follow_the_map():
    members = CorePortSignature(bus_bytes=16).members
    for register in REGISTERS:
        if register.kind is Kind.CONFIG:
            assert members[register.port].flow.name == "Out"
            assert register.access is Access.RW
        elif register.kind is Kind.COUNTER and register.increment == "1":
            assert Shape.cast(members[register.port].shape).width == 1
    assert Shape.cast(members["bytes_read"].shape).width == 5  # 0..16 bytes per cycle


def test_register_block_needs_a_config():
    with pytest.raises(TypeError) as info:
        RegisterBlock(config="small")
    assert str(info.value) == "'config' must be an AcceleratorConfig, not 'small'"
