"""`Backend`: what a device must offer the driver, and the registry of backends by name.

A backend is one small file (``gemmstone/driver/backends/<name>.py``) with a subclass of
`Backend` implementing a handful of private methods: 32-bit register reads and writes at
the byte offsets of `gemmstone.hw.register_map`, bulk DRAM reads and writes at bus
addresses, a way to let the device run between two polls, and closing. Everything else
(allocation, loading programs, starting and waiting for runs, turning faults into
exceptions) is driver code shared by every backend.
"""

from __future__ import annotations

import abc
import importlib
from typing import ClassVar

from gemmstone.config import AcceleratorConfig

__all__ = ["Backend", "BACKENDS", "backend_class"]

#: Backend name -> "module:class", imported only when the backend is opened (the rtl
#: backend needs Amaranth, Verilator and cocotb; the others do not).
BACKENDS: dict[str, str] = {
    "func": "gemmstone.driver.backends.func:FuncBackend",
    "rtl": "gemmstone.driver.backends.rtl:RtlBackend",
    "perf": "gemmstone.driver.backends.perf:PerfBackend",
}


class Backend(abc.ABC):
    """One device as the driver sees it: registers, memory, time.

    Parameters
    ----------
    config : AcceleratorConfig
        The configuration the device's hardware is built from (what its CONFIG_ID
        register reports).

    Members
    -------
    name : str
        The backend's registry name.
    config : AcceleratorConfig
    memory_bytes : int
        Size of the device's DRAM (bus addresses ``0 .. memory_bytes - 1``).
    """

    name: ClassVar[str]

    def __init__(self, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        self.config = config
        self.memory_bytes = config.dram_bytes

    @abc.abstractmethod
    def _read_reg(self, offset: int) -> int:
        """The 32-bit register at byte ``offset``."""

    @abc.abstractmethod
    def _write_reg(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset``."""

    @abc.abstractmethod
    def _read_mem(self, address: int, size: int) -> bytes:
        """``size`` bytes of DRAM from bus address ``address``."""

    @abc.abstractmethod
    def _write_mem(self, address: int, data: bytes) -> None:
        """Write ``data`` to DRAM at bus address ``address``."""

    def _idle(self, cycles: int) -> None:  # noqa: B027 (a no-op is right for synchronous backends)
        """Let the device run for about ``cycles`` clock cycles before the driver polls
        again. Backends that finish a run inside the START write need not wait."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the device (processes, files). Called once."""


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises
    ------
    ValueError
        If no backend has that name.
    """
    try:
        module_name, class_name = BACKENDS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of "
                         f"{', '.join(map(repr, BACKENDS))}") from None
    return getattr(importlib.import_module(module_name), class_name)
