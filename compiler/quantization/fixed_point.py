"""Real scales as the ISA's fixed-point (multiplier, shift) pairs.

The output stage computes ``rshr(x * mult, shift)`` with ``rshr(p, s) = p`` for s = 0 and
``(p >> s) + ((p >> (s - 1)) & 1)`` (round half up) otherwise, so ``x * real_scale`` is
approximated by ``x * mult / 2**shift``: ``mult`` is kept in [2**30, 2**31) for 31 bits
of precision, the shift in [0, 63] (bits [5:0] of the shift register).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["quantize_multiplier", "quantize_multipliers", "shared_shift_multipliers"]

_MAX_SHIFT = 63


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """``(mult, shift)`` with ``mult / 2**shift`` closest to ``real_scale`` at 31-bit
    precision; ``0 < mult < 2**31`` and ``0 <= shift <= 63``.

    Scales below ``2**-32`` lose precision (the shift saturates at 63) and those below
    ``2**-64`` become ``(0, 0)``, which outputs zero.

    Raises
    ------
    ValueError
        If ``real_scale`` is not a finite positive number below ``2**30``.
    """
    if not (isinstance(real_scale, int | float | np.floating) and math.isfinite(real_scale)
            and 0 < real_scale < 2.0 ** 30):
        raise ValueError(f"'real_scale' must be a finite number in (0, 2**30), "
                         f"not {real_scale!r}")
    mantissa, exponent = math.frexp(float(real_scale))  # real = mantissa * 2**exponent
    mult = round(mantissa * (1 << 31))
    if mult == 1 << 31:
        mult, exponent = 1 << 30, exponent + 1
    shift = 31 - exponent
    if shift > _MAX_SHIFT:
        mult = round(float(real_scale) * 2.0 ** _MAX_SHIFT)
        shift = _MAX_SHIFT if mult else 0
    return int(mult), int(shift)


def quantize_multipliers(real_scales) -> tuple[np.ndarray, np.ndarray]:
    """`quantize_multiplier` of each scale: int32 arrays ``(mult, shift)``."""
    pairs = [quantize_multiplier(float(s)) for s in np.asarray(real_scales).reshape(-1)]
    mult = np.array([m for m, _ in pairs], dtype=np.int32)
    shift = np.array([s for _, s in pairs], dtype=np.int32)
    return mult, shift


def shared_shift_multipliers(real_scales) -> tuple[np.ndarray, int]:
    """Per-channel multipliers with one shift for all (the ALU's MULSHR takes one shift):
    the smallest of the individual shifts, so the largest scale keeps full precision and
    no multiplier exceeds 31 bits."""
    mult, shift = quantize_multipliers(real_scales)
    common = int(shift.min())
    scaled = np.round(mult.astype(np.float64) * 2.0 ** (common - shift.astype(np.int64)))
    return scaled.astype(np.int32), common
