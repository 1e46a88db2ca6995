"""Vectorized instruction encoding: columns of field values to 128-bit words.

Kernels emit hundreds of thousands of instructions per model; `gemmstone.isa.make` and
`gemmstone.isa.encode` check and pack one instruction at a time in Python. `encode_columns`
packs a whole column of instructions of one mnemonic at once with numpy, from the same
table (`gemmstone.isa.table`), and still checks every value against its field (a min/max
per column, not per instruction). Words are returned as two uint64 arrays, bits [0, 64)
and [64, 128).
"""

from __future__ import annotations

import numpy as np

from gemmstone.isa.errors import EncodingError
from gemmstone.isa.table import BY_MNEMONIC, TOKEN_FIELDS

_TOKENS = {f.name for f in TOKEN_FIELDS}

__all__ = ["encode_columns", "token_bit"]

# Per mnemonic: {field: (lsb, width, low, high, allowed enum values or None)}.
_FIELDS = {
    spec.mnemonic: {f.name: (f.lsb, f.width, f.min, f.max,
                             np.array(sorted(int(v) for v in f.kind)) if f.is_enum else None)
                    for f in spec.all_fields if f.name in spec.operand_names}
    for spec in BY_MNEMONIC.values()
}


def encode_columns(mnemonic: str, count: int,
                   **columns: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` instructions of ``mnemonic``: (low, high) uint64 word halves.

    Each keyword is a field (token flags included) given as an integer array of length
    ``count`` or one integer for all; fields not given are zero.

    Raises
    ------
    EncodingError
        Unknown mnemonic or field, a value that does not fit its field, or a token flag the
        instruction's unit cannot set.
    """
    spec = BY_MNEMONIC.get(mnemonic)
    if spec is None:
        raise EncodingError(f"unknown instruction {mnemonic!r}")
    fields = _FIELDS[mnemonic]
    lo = np.full(count, spec.opcode, np.uint64)
    hi = np.zeros(count, np.uint64)
    for name, value in columns.items():
        if name not in fields:
            raise EncodingError(f"{mnemonic}: unknown field(s) {name}; fields are "
                                f"{', '.join(spec.operand_names)}")
        lsb, width, low, high, members = fields[name]
        values = np.asarray(value, dtype=np.int64)
        if values.ndim and values.shape != (count,):
            raise EncodingError(f"{mnemonic}.{name}: {values.shape[0]} values for {count} "
                                f"instructions")
        if not values.size or not count:
            continue
        least, most = int(values.min()), int(values.max())
        if name in _TOKENS and most and not spec.unit.allows(name):
            raise EncodingError(f"{mnemonic}: {name} set, but the {spec.unit.name.lower()} "
                                f"unit has no {name.split('_')[1]} neighbour")
        if least < low or most > high:
            bad = least if least < low else most
            raise EncodingError(f"{mnemonic}.{name} = {bad} does not fit its {width}-bit "
                                f"field ({low}..{high})")
        if members is not None and not np.isin(values, members).all():
            bad = int(values[~np.isin(values, members)].reshape(-1)[0])
            raise EncodingError(f"{mnemonic}.{name}: {bad} is not a valid value")
        bits = (values & ((1 << width) - 1)).astype(np.uint64)
        if lsb >= 64:
            hi |= bits << np.uint64(lsb - 64)
        elif lsb + width <= 64:
            lo |= bits << np.uint64(lsb)
        else:  # a field across bit 64
            lo |= bits << np.uint64(lsb)
            hi |= bits >> np.uint64(64 - lsb)
    return lo, hi



def token_bit(flag: str) -> np.uint64:
    """The bit of token flag ``flag`` (``pop_prev``, ...) in the low half of every word."""
    return np.uint64(1 << next(f.lsb for f in TOKEN_FIELDS if f.name == flag))
