"""`Allocator`: first-fit allocation of the device's DRAM address space.

The driver alone decides where buffers, instructions and program windows live; the
device's DMA window then confines each program to its own region.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from gemmstone.driver.errors import DriverError, OutOfDeviceMemoryError

__all__ = ["Allocation", "Allocator", "DEFAULT_ALIGNMENT"]

#: Allocations start on this many bytes: a multiple of every DRAM bus width (<= 128 bytes
#: by the config's bounds) and of the 16-byte instruction word.
DEFAULT_ALIGNMENT = 128


@dataclass(frozen=True)
class Allocation:
    """A region of device memory: bus addresses ``[address, address + size)``."""

    address: int
    size: int

    @property
    def end(self) -> int:
        return self.address + self.size


class Allocator:
    """First-fit allocator over ``[base, limit)`` with coalescing of freed regions.

    Parameters
    ----------
    base, limit : int
        The managed bus addresses. Region sizes are rounded up to ``alignment``.
    alignment : int
        A power of two; every allocation starts and ends on a multiple of it.

    Raises
    ------
    ValueError
        If ``alignment`` is not a power of two, or ``[base, limit)`` is empty or unaligned.
    """

    def __init__(self, base: int, limit: int, *, alignment: int = DEFAULT_ALIGNMENT) -> None:
        if alignment < 1 or alignment & (alignment - 1):
            raise ValueError(f"'alignment' must be a power of two, not {alignment!r}")
        if base % alignment or limit % alignment or not 0 <= base < limit:
            raise ValueError(f"[{base:#x}, {limit:#x}) is not a non-empty range aligned to "
                             f"{alignment} bytes")
        self.base, self.limit, self.alignment = base, limit, alignment
        self._free: list[tuple[int, int]] = [(base, limit)]  # sorted, disjoint, coalesced
        self._used: dict[int, Allocation] = {}

    @property
    def free_bytes(self) -> int:
        return sum(end - start for start, end in self._free)

    @property
    def used_bytes(self) -> int:
        return sum(a.size for a in self._used.values())

    def allocate(self, size: int) -> Allocation:
        """A new region of at least ``size`` bytes (at least one alignment unit).

        Raises
        ------
        OutOfDeviceMemoryError
            No free region is large enough.
        """
        if type(size) is not int or size < 0:
            raise ValueError(f"'size' must be a non-negative integer, not {size!r}")
        rounded = max(self.alignment, -(-size // self.alignment) * self.alignment)
        for i, (start, end) in enumerate(self._free):
            if end - start >= rounded:
                if end - start == rounded:
                    del self._free[i]
                else:
                    self._free[i] = (start + rounded, end)
                allocation = Allocation(start, rounded)
                self._used[start] = allocation
                return allocation
        largest = max((end - start for start, end in self._free), default=0)
        raise OutOfDeviceMemoryError(
            f"cannot allocate {size} bytes of device memory: {self.free_bytes} bytes are "
            f"free, the largest free region has {largest}")

    def free(self, allocation: Allocation) -> None:
        """Return ``allocation`` to the free regions.

        Raises
        ------
        DriverError
            ``allocation`` is not a live allocation of this allocator (e.g. freed twice).
        """
        if self._used.get(allocation.address) != allocation:
            raise DriverError(f"{allocation} is not allocated (freed twice, or from another "
                              f"device)")
        del self._used[allocation.address]
        start, end = allocation.address, allocation.end
        i = bisect.bisect(self._free, (start, end))
        if i < len(self._free) and self._free[i][0] == end:
            end = self._free.pop(i)[1]
        if i > 0 and self._free[i - 1][1] == start:
            start = self._free.pop(i - 1)[0]
            i -= 1
        self._free.insert(i, (start, end))
