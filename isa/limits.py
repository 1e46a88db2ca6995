"""Which configs the ISA can address: every operand a config needs must fit its field.

`AcceleratorConfig` cannot import the ISA (the import direction is config <- isa), so the
check that its sizes fit the instruction fields lives here, derived from the table's field
widths rather than restated; the functional model, the program builder and the RTL call it.
"""

from __future__ import annotations

from gemmstone.config import AcceleratorConfig, ConfigError
from gemmstone.isa.table import BY_MNEMONIC

__all__ = ["operand_limits", "check_config_fits"]


def operand_limits(config: AcceleratorConfig) -> dict[tuple[str, str], int]:
    """(mnemonic, field) -> the largest value ``config`` needs that field to hold."""
    limits = {}
    for spec in BY_MNEMONIC.values():
        for f in spec.operands:
            if f.name == "spad":
                limits[spec.mnemonic, f.name] = config.spad_lines - 1
            elif f.name in ("acc", "dst", "src"):
                limits[spec.mnemonic, f.name] = config.acc_rows - 1
            elif f.name == "dram":
                limits[spec.mnemonic, f.name] = config.dram_bytes - 1
            elif f.name == "len":
                limits[spec.mnemonic, f.name] = (config.line_bytes if spec.mnemonic == "load"
                                                 else config.cols)
            elif f.name == "k":
                limits[spec.mnemonic, f.name] = config.rows
    return limits


def check_config_fits(config: AcceleratorConfig) -> None:
    """Raise `ConfigError` naming the first field too narrow for ``config``."""
    for (mnemonic, name), needed in operand_limits(config).items():
        field = next(f for f in BY_MNEMONIC[mnemonic].operands if f.name == name)
        if needed > field.max:
            raise ConfigError(
                f"config needs {mnemonic}.{name} to hold {needed}, but the field is "
                f"{field.width} bits (at most {field.max})")
