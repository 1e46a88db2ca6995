"""Config sizes against the ISA's field widths."""

import pytest

from gemmstone.config import PRESETS, AcceleratorConfig, ConfigError
from gemmstone.isa.limits import check_config_fits, operand_limits


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_fit(name):
    check_config_fits(PRESETS[name])


def test_limits_come_from_the_config():
    config = PRESETS["rect"]
    limits = operand_limits(config)
    assert limits["load", "spad"] == config.spad_lines - 1
    assert limits["alu", "src"] == config.acc_rows - 1
    assert limits["load", "len"] == config.line_bytes
    assert limits["store", "len"] == config.cols
    assert limits["preload", "k"] == config.rows


def test_largest_config_fits_and_a_field_too_narrow_is_named():
    biggest = AcceleratorConfig(rows=128, cols=128, spad_kib=8192, acc_kib=32768,
                                dram_mib=4096)
    check_config_fits(biggest)
    # A wider accumulator row than the 8-bit len fields can count would not fit; the
    # config itself allows at most 128 columns, so show the check on a stand-in config.
    wide = biggest.replace(cols=128)
    object.__setattr__(wide, "cols", 256)  # bypasses validation on purpose
    with pytest.raises(ConfigError, match=r"^config needs load\.len to hold 256, but the "
                                          r"field is 8 bits \(at most 255\)$"):
        check_config_fits(wide)
