"""`Scratchpad`: the banked on-chip buffer of input and weight lines."""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.banked_memory import BankedMemory
from gemmstone.hw.params import check_int

__all__ = ["Scratchpad", "line_layout"]


def line_layout(line_bytes: int) -> data.ArrayLayout:
    """A scratchpad line: ``line_bytes`` bytes, byte 0 in the low bits (DRAM byte order)."""
    return data.ArrayLayout(unsigned(8), check_int("line_bytes", line_bytes))


class Scratchpad(BankedMemory):
    """``depth`` lines of ``line_bytes`` bytes in ``banks`` banks (see `BankedMemory` for the
    ports and their timing).

    An input row uses a line's first ``rows`` bytes and a weight row its first ``cols``
    bytes, as int8; the scratchpad itself holds raw bytes.

    Parameters
    ----------
    line_bytes : int
        Bytes per line (``config.line_bytes``).
    depth, banks, read_ports, write_ports : int
        As for `BankedMemory`.

    Members
    -------
    read, write, collision
        As for `BankedMemory`, with rows of `line_layout` (``line_bytes``).
    """

    def __init__(self, *, line_bytes: int, depth: int, banks: int = 1, read_ports: int = 1,
                 write_ports: int = 1) -> None:
        self.line_bytes = line_bytes
        super().__init__(shape=line_layout(line_bytes), depth=depth, banks=banks,
                         read_ports=read_ports, write_ports=write_ports)

    @classmethod
    def from_config(cls, config: AcceleratorConfig, *, read_ports: int = 1,
                    write_ports: int = 1) -> Scratchpad:
        """The scratchpad of ``config``: ``spad_lines`` lines in ``spad_banks`` banks."""
        return cls(line_bytes=config.line_bytes, depth=config.spad_lines,
                   banks=config.spad_banks, read_ports=read_ports, write_ports=write_ports)
