"""gemmstone: an open tensor accelerator and its whole software stack."""

from gemmstone.config import AcceleratorConfig, ConfigError, preset

__all__ = ["AcceleratorConfig", "ConfigError", "preset"]
__version__ = "0.1.0"
