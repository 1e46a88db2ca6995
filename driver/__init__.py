"""gemmstone.driver: one device API over every backend, and the PyTorch integration.

Example::

    from gemmstone.driver import Device
    with Device("tiny") as device:            # the functional model by default
        outputs = device.execute(program, {"a": a})   # buffer name -> array
"""

from gemmstone.driver.backend import BACKENDS, Backend
from gemmstone.driver.device import DEFAULT_TIMEOUT, Device, LoadedProgram
from gemmstone.driver.errors import (
    ConfigMismatchError,
    DeviceBusyError,
    DeviceClosedError,
    DeviceLostError,
    DeviceTimeoutError,
    DriverError,
    OutOfDeviceMemoryError,
)
from gemmstone.driver.memory import Allocation, Allocator

__all__ = [
    "Device", "LoadedProgram", "Backend", "BACKENDS", "DEFAULT_TIMEOUT", "Allocation",
    "Allocator", "DriverError", "ConfigMismatchError", "DeviceTimeoutError",
    "DeviceLostError", "DeviceBusyError", "DeviceClosedError", "OutOfDeviceMemoryError",
]
