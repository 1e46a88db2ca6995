"""The device-memory allocator."""

from __future__ import annotations

import pytest

from gemmstone.driver import Allocation, Allocator, DriverError, OutOfDeviceMemoryError


def test_first_fit_alignment_and_reuse():
    allocator = Allocator(0x1000, 0x2000, alignment=0x100)
    a = allocator.allocate(1)
    b = allocator.allocate(0x101)
    c = allocator.allocate(0)
    assert (a, b, c) == (Allocation(0x1000, 0x100), Allocation(0x1100, 0x200),
                         Allocation(0x1300, 0x100))
    allocator.free(b)
    assert allocator.allocate(0x80) == Allocation(0x1100, 0x100)  # first fit, in b's hole
    assert allocator.used_bytes == 0x300
    assert allocator.free_bytes == 0x1000 - 0x300


def test_freed_neighbours_coalesce():
    allocator = Allocator(0, 0x400, alignment=0x100)
    parts = [allocator.allocate(0x100) for _ in range(4)]
    for part in (parts[0], parts[2], parts[1], parts[3]):
        allocator.free(part)
    assert allocator.allocate(0x400) == Allocation(0, 0x400)


def test_out_of_memory_says_what_is_free():
    allocator = Allocator(0, 0x400, alignment=0x100)
    allocator.allocate(0x100)
    middle = allocator.allocate(0x100)
    allocator.allocate(0x100)
    allocator.free(middle)
    with pytest.raises(OutOfDeviceMemoryError, match=r"^cannot allocate 513 bytes of device "
                       r"memory: 512 bytes are free, the largest free region has 256$"):
        allocator.allocate(0x201)


def test_double_free_and_bad_arguments():
    allocator = Allocator(0, 0x400, alignment=0x100)
    a = allocator.allocate(0x10)
    allocator.free(a)
    with pytest.raises(DriverError, match=r"is not allocated \(freed twice"):
        allocator.free(a)
    with pytest.raises(ValueError, match="'alignment' must be a power of two, not 3"):
        Allocator(0, 0x400, alignment=3)
    with pytest.raises(ValueError, match="'size' must be a non-negative integer, not -1"):
        allocator.allocate(-1)
