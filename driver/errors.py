"""Exceptions of the driver itself (faults of a running program are the ISA's exception
types, `gemmstone.isa.ExecutionError` and its subclasses)."""

from __future__ import annotations

__all__ = ["DriverError", "ConfigMismatchError", "DeviceTimeoutError", "DeviceLostError",
           "DeviceBusyError", "DeviceClosedError", "OutOfDeviceMemoryError"]


class DriverError(RuntimeError):
    """Something went wrong between the driver and a device (not inside a program)."""


class ConfigMismatchError(DriverError):
    """The hardware was built for another config or ISA than the driver or the program
    expects (the CONFIG_ID / ISA_ID registers disagree)."""


class DeviceTimeoutError(DriverError, TimeoutError):
    """A run did not finish within its timeout. The run may still be going on: wait again,
    or `Device.abort` it."""


class DeviceLostError(DriverError):
    """The backend stopped answering, or its process died; the device is closed and can be
    opened again."""


class DeviceBusyError(DriverError):
    """A program was started, or device memory used, while a run is in progress."""


class DeviceClosedError(DriverError):
    """The device was used after `Device.close` (or after it was lost)."""


class OutOfDeviceMemoryError(DriverError, MemoryError):
    """No free region of device memory is large enough for an allocation."""
