"""The ``func`` backend: the functional model (`gemmstone.sim.functional`) behind the
accelerator's register interface. The default backend.

Writing CONTROL.START runs the program the registers describe, read from device memory,
to its end before the write returns: STATUS, the error registers and the counters then
read as the hardware leaves them. The model has no clock, so the cycle, busy and stall
counters and WATCHDOG mean nothing here (they read 0 and are ignored).
"""

from __future__ import annotations

import numpy as np

from gemmstone.config import AcceleratorConfig
from gemmstone.driver.backend import Backend
from gemmstone.driver.errors import DriverError
from gemmstone.hw.register_map import (
    CONTROL_SOFT_RESET,
    CONTROL_START,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    Access,
    Kind,
    reset_value,
)
from gemmstone.isa.encoding import bytes_to_words
from gemmstone.isa.errors import ExecutionError
from gemmstone.isa.table import WORD_BYTES
from gemmstone.sim.functional import FunctionalModel

__all__ = ["FuncBackend"]

_WORD_MASK = 0xFFFF_FFFF


class FuncBackend(Backend):
    """The functional model as a device.

    Parameters
    ----------
    config : AcceleratorConfig
    schedule_seed : int, optional
        Randomize the units' interleaving with this seed (see
        `gemmstone.sim.functional.FunctionalModel.run`): a program missing a token gives
        results that differ between seeds.

    Members
    -------
    model : FunctionalModel
        The model; its ``dram`` is the device memory.
    """

    name = "func"

    def __init__(self, config: AcceleratorConfig, *, schedule_seed: int | None = None) -> None:
        super().__init__(config)
        self.model = FunctionalModel(config)
        self.schedule_seed = schedule_seed
        self._values = {r.name: reset_value(r, config) for r in REGISTERS}
        self._by_offset = {}
        for register in REGISTERS:
            for word in range(register.words):
                self._by_offset[register.offset + 4 * word] = (register, word)

    def _register(self, offset: int):
        try:
            return self._by_offset[offset]
        except KeyError:
            raise DriverError(f"func backend: no register at offset {offset:#x} (the "
                              f"hardware answers SLVERR)") from None

    def _read_reg(self, offset: int) -> int:
        register, word = self._register(offset)
        if register.access is Access.WO:
            return 0
        return (self._values[register.name] >> (32 * word)) & _WORD_MASK

    def _write_reg(self, offset: int, value: int) -> None:
        register, _ = self._register(offset)
        if register.access is not Access.RW and register.kind is not Kind.CONTROL:
            return  # writes to read-only registers are ignored, as on the hardware
        if register.kind is Kind.CONTROL:
            if value >> CONTROL_SOFT_RESET.lsb & 1:
                self._soft_reset()
            if value >> CONTROL_START.lsb & 1:
                self._start()
            return
        self._values[register.name] = value & _WORD_MASK

    def _read_mem(self, address: int, size: int) -> bytes:
        return self.model.dram[address:address + size].tobytes()

    def _write_mem(self, address: int, data: bytes) -> None:
        self.model.dram[address:address + len(data)] = np.frombuffer(data, np.uint8)

    def _close(self) -> None:
        self.model.dram = np.zeros(0, np.uint8)  # the memory goes with the device

    # -- the hardware's behaviour on CONTROL writes -------------------------------------

    def _clear_run_state(self) -> None:
        for register in REGISTERS:
            if register.kind in (Kind.STATUS, Kind.COUNTER):
                self._values[register.name] = 0

    def _soft_reset(self) -> None:
        self._clear_run_state()
        self.model.reset()

    def _start(self) -> None:
        values = self._values
        if values["STATUS"] >> STATUS_BUSY.lsb & 1:
            return  # START is ignored while busy
        self._clear_run_state()
        base, count = values["INSTR_BASE"], values["INSTR_COUNT"]
        window_base = values["WINDOW_BASE"]
        dram_bytes = self.model.dram.size
        window_limit = min(values["WINDOW_LIMIT"], dram_bytes)
        window_size = max(0, window_limit - window_base) if window_base < dram_bytes else 0
        window_base = min(window_base, dram_bytes)
        code = self.model.dram[base:base + count * WORD_BYTES].tobytes()
        words = bytes_to_words(code.ljust(count * WORD_BYTES, b"\0"))
        status = 1 << STATUS_DONE.lsb
        try:
            counters = self.model.run(words, window_base=window_base, window_size=window_size,
                                      schedule_seed=self.schedule_seed)
        except ExecutionError as error:
            status |= 1 << STATUS_ERROR.lsb
            values["ERROR_CODE"] = int(error.code)
            values["ERROR_INDEX"] = (error.index or 0) & _WORD_MASK
            values["ERROR_ADDR"] = (error.address or 0) & _WORD_MASK
        else:
            for unit in ("load", "compute", "store"):
                values[f"RETIRED_{unit.upper()}"] = counters.instructions[unit]
            fetched = counters.total_instructions * WORD_BYTES
            values["BYTES_READ"] = counters.dram_bytes_read + fetched
            values["BYTES_WRITTEN"] = counters.dram_bytes_written
        values["STATUS"] = status
