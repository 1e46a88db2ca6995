"""Verilog export: port names and widths, the provenance header, argument errors."""

from __future__ import annotations

import re

import pytest

from gemmstone.config import preset
from gemmstone.hw.verilog import component_verilog, generate_verilog
from gemmstone.isa import isa_hash


def _ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    body = verilog[verilog.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           body, flags=re.MULTILINE):
        ports[name] = (direction, int(msb or 0) + 1)
    return ports


def test_array_verilog_has_the_stream_ports_of_the_config():
    config = preset("rect")  # 4 rows x 8 cols
    verilog = generate_verilog(config, top="array")
    assert verilog.startswith(f"// gemmstone array: {config.describe()}\n"
                              f"// config {config.content_hash}\n// isa {isa_hash()}\n")
    assert _ports(verilog, "gemmstone_array") == {
        "clk": ("input", 1),
        "rst": ("input", 1),
        "inputs__payload": ("input", 4 * 8),
        "inputs__valid": ("input", 1),
        "weights__payload": ("input", 8 * 8 + 1),
        "weights__valid": ("input", 1),
        "weights__ready": ("output", 1),
        "outputs__payload": ("output", 8 * 32),
        "outputs__valid": ("output", 1),
    }


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"^'top' must be one of 'array', not 'core'$"):
        generate_verilog(preset("tiny"), top="core")
    with pytest.raises(TypeError, match=r"^'config' must be an AcceleratorConfig, not 'tiny'$"):
        generate_verilog("tiny")
    with pytest.raises(TypeError, match=r"^'component' must be a wiring.Component, not 3$"):
        component_verilog(3)
