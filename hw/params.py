"""Checks for component parameters: bad values fail at construction, naming the parameter."""

from __future__ import annotations

__all__ = ["check_int", "check_power_of_two"]


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` if it is an integer of at least ``minimum``.

    Raises
    ------
    TypeError
        ``value`` is not an integer (``bool`` is not one either).
    ValueError
        ``value`` is below ``minimum``.
    """
    if type(value) is not int:
        raise TypeError(f"'{name}' must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"'{name}' must be at least {minimum}, not {value}")
    return value


def check_power_of_two(name: str, value: object) -> int:
    """``value`` if it is a positive integer power of two (1, 2, 4, ...).

    Raises
    ------
    TypeError
        ``value`` is not an integer.
    ValueError
        ``value`` is not a positive power of two.
    """
    check_int(name, value)
    if value & (value - 1):
        raise ValueError(f"'{name}' must be a power of two, not {value}")
    return value
