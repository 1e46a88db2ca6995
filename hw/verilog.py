"""Verilog from gemmstone components: the text Verilator builds and FPGA flows read."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.back import verilog
from amaranth.hdl import Signal, ValueCastable
from amaranth.lib import wiring

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.systolic_array import SystolicArray
from gemmstone.isa import isa_hash

__all__ = ["TOPS", "component_verilog", "generate_verilog"]

#: The components `generate_verilog` can make a top module of, by name.
TOPS: dict[str, Callable[[AcceleratorConfig], wiring.Component]] = {
    "array": SystolicArray.from_config,
}


def component_verilog(component: wiring.Component, *, name: str = "top") -> str:
    """Verilog text of ``component`` as a module called ``name``.

    Every signal member of the component's signature becomes a port named by its path
    (``inputs__payload``, ``outputs__valid``). Members that are constants, such as the
    ``ready`` of an ``always_ready`` stream, get no port: there is nothing to connect.

    Raises
    ------
    TypeError
        If ``component`` is not a `wiring.Component`.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"'component' must be a wiring.Component, not {component!r}")
    ports = {}
    for path, _member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Signal):
            # Direction None: Amaranth infers it (members the component drives are outputs).
            ports["__".join(map(str, path))] = (value, None)
    return verilog.convert(component, name=name, ports=ports, emit_src=False)


def generate_verilog(config: AcceleratorConfig, *, top: str = "array") -> str:
    """Verilog of the ``top`` component built from ``config``, as module ``gemmstone_<top>``.

    The text starts with comments naming the configuration and the ISA hash, so a file on
    disk says what it was generated from.

    Raises
    ------
    TypeError
        If ``config`` is not an `AcceleratorConfig`.
    ValueError
        If ``top`` is not a key of `TOPS`.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
    if top not in TOPS:
        raise ValueError(f"'top' must be one of {', '.join(map(repr, TOPS))}, not {top!r}")
    text = component_verilog(TOPS[top](config), name=f"gemmstone_{top}")
    header = (f"// gemmstone {top}: {config.describe()}\n"
              f"// config {config.content_hash}\n// isa {isa_hash()}\n")
    return header + text
