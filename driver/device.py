"""`Device`: the one device API (memory, programs, runs, counters) over every backend.

The driver talks to a device only through its registers (`gemmstone.hw.register_map`, a
plain-Python table) and its DRAM, through the few private methods of a
`gemmstone.driver.backend.Backend`; the same code therefore runs on the functional model,
the Verilated RTL and a board.

Memory: the driver allocates the device's DRAM (`Allocator`). A loaded program gets two
regions: its instruction words, and its DMA window (constants, inputs, outputs, scratch),
which is zeroed and then filled with the program's constant segments. Each run sets
WINDOW_BASE/WINDOW_LIMIT to that program's window, so a program can touch only its own
buffers; an access outside faults with `gemmstone.isa.DmaWindowError`.

Runs: `Device.start` writes INSTR_BASE, INSTR_COUNT, WINDOW_BASE, WINDOW_LIMIT, WATCHDOG
and CONTROL.START; `Device.wait` polls STATUS (letting the backend run between polls) until
the run ends or the timeout passes. A fault (ERROR_CODE, ERROR_INDEX, ERROR_ADDR) becomes
the matching exception of `gemmstone.isa.errors.ERROR_TYPES`, naming the instruction and
its disassembly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from gemmstone.config import AcceleratorConfig, preset
from gemmstone.driver.backend import Backend, backend_class
from gemmstone.driver.errors import (
    ConfigMismatchError,
    DeviceBusyError,
    DeviceClosedError,
    DeviceLostError,
    DeviceTimeoutError,
    DriverError,
)
from gemmstone.driver.memory import Allocation, Allocator
from gemmstone.hw.register_map import (
    BY_NAME,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    MAGIC,
    MAP_VERSION,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    Kind,
    config_id,
    hash_id,
    isa_id,
)
from gemmstone.isa.encoding import decode, words_to_bytes
from gemmstone.isa.errors import ERROR_TYPES, AddressError, ErrorCode, ExecutionError
from gemmstone.isa.program import Program

__all__ = ["Device", "LoadedProgram", "DEFAULT_TIMEOUT", "RESERVED_BYTES"]

#: Seconds `Device.wait` waits for a run unless told otherwise.
DEFAULT_TIMEOUT = 60.0
#: DRAM below this bus address is never allocated, so address 0 is never a valid buffer.
RESERVED_BYTES = 4096
# Polls start this many cycles apart and double up to the maximum: short runs end
# promptly, long ones cost few round trips.
_FIRST_POLL_CYCLES = 64
_MAX_POLL_CYCLES = 16384

_BUSY, _DONE, _ERROR = (1 << f.lsb for f in (STATUS_BUSY, STATUS_DONE, STATUS_ERROR))
_COUNTERS = tuple(r for r in REGISTERS if r.kind is Kind.COUNTER)
_DTYPES = {"int8": np.dtype("i1"), "uint8": np.dtype("u1"), "int32": np.dtype("<i4")}


class LoadedProgram:
    """A `gemmstone.isa.Program` placed in a device's memory, ready to run.

    Created by `Device.load`. ``write`` and ``read`` move a named buffer's contents in and
    out of the program's window.

    Members
    -------
    program : gemmstone.isa.Program
    code : Allocation
        The instruction words.
    window : Allocation
        The DMA window; WINDOW_BASE is ``window.address``, WINDOW_LIMIT is
        ``window.address + program.window_size``.
    """

    def __init__(self, device: Device, program: Program, code: Allocation,
                 window: Allocation) -> None:
        self.device, self.program, self.code, self.window = device, program, code, window
        self.freed = False

    @property
    def window_limit(self) -> int:
        return self.window.address + self.program.window_size

    def write(self, name: str, value: Any) -> None:
        """Copy ``value`` into the program's buffer ``name``.

        Raises
        ------
        ValueError
            No buffer has that name, or ``value``'s shape or dtype differs from it.
        """
        buffer = self._buffer(name)
        array = np.asarray(value)
        if array.shape != buffer.shape or array.dtype != _DTYPES[buffer.dtype]:
            raise ValueError(f"buffer {name!r} is {buffer.dtype}{list(buffer.shape)}, not "
                             f"{array.dtype}{list(array.shape)}")
        self.device.copy_in(self.window, np.ascontiguousarray(array).tobytes(),
                            offset=buffer.offset)

    def read(self, name: str) -> np.ndarray:
        """The contents of the program's buffer ``name``, as an array of its shape."""
        buffer = self._buffer(name)
        raw = self.device.copy_out(self.window, buffer.nbytes, offset=buffer.offset)
        return np.frombuffer(raw, _DTYPES[buffer.dtype]).reshape(buffer.shape).astype(
            buffer.dtype)

    def run(self, *, timeout: float | None = None, watchdog: int = 0) -> dict[str, int]:
        """`Device.run` this program."""
        return self.device.run(self, timeout=timeout, watchdog=watchdog)

    def free(self) -> None:
        """`Device.free_program` this program."""
        self.device.free_program(self)

    def _buffer(self, name: str):
        self._check_live()
        try:
            return self.program.buffers[name]
        except KeyError:
            raise ValueError(f"the program has no buffer {name!r}; its buffers are "
                             f"{', '.join(self.program.buffers) or '(none)'}") from None

    def _check_live(self) -> None:
        if self.freed:
            raise DriverError("the program was freed; load it again")


class Device:
    """One accelerator, on any backend.

    Parameters
    ----------
    config : AcceleratorConfig or str
        The configuration (or preset name) the device's hardware is built from.
    backend : str or Backend
        A backend name (``"func"``, the functional model, is the default; ``"rtl"`` the
        Verilated design) or an opened `Backend`.
    timeout : float
        Seconds `wait` waits for a run unless given another timeout.
    **options
        Passed to the backend class when ``backend`` is a name.

    Raises
    ------
    ConfigMismatchError
        The hardware's MAGIC, MAP_VERSION, CONFIG_ID or ISA_ID is not what ``config`` and
        this ISA make.
    ValueError
        Unknown backend name.
    """

    def __init__(self, config: AcceleratorConfig | str, backend: str | Backend = "func", *,
                 timeout: float = DEFAULT_TIMEOUT, **options: Any) -> None:
        self.config = preset(config) if isinstance(config, str) else config
        if not isinstance(self.config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig or a preset name, not "
                            f"{config!r}")
        if isinstance(backend, Backend):
            if options:
                raise TypeError(f"backend options {sorted(options)} need a backend name, "
                                f"not an opened backend")
            self.backend = backend
        else:
            self.backend = backend_class(backend)(self.config, **options)
        self.timeout = timeout
        self.closed = False
        self._running: LoadedProgram | None = None
        self._watchdog = 0
        self.allocator = Allocator(RESERVED_BYTES, self.backend.memory_bytes)
        try:
            self._check_identity()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Device {self.backend.name} {self.config.describe()} ({state})>"

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- registers ----------------------------------------------------------------------

    def read_register(self, name: str) -> int:
        """A register by name; 64-bit counters are read low half first (which latches the
        high half, as the register map requires)."""
        register = BY_NAME[name]
        low = self._call(self.backend._read_reg, register.offset)
        if register.width == 32:
            return low
        return low | self._call(self.backend._read_reg, register.offset + 4) << 32

    def write_register(self, name: str, value: int) -> None:
        """Write a 32-bit register by name."""
        self._call(self.backend._write_reg, BY_NAME[name].offset, value & 0xFFFF_FFFF)

    def counters(self) -> dict[str, int]:
        """Every performance counter of the last run, by lower-case register name
        (``cycles``, ``retired_load``, ``bytes_written``, ...)."""
        return {r.name.lower(): self.read_register(r.name) for r in _COUNTERS}

    def _check_identity(self) -> None:
        magic = self.read_register("MAGIC")
        if magic != MAGIC:
            raise ConfigMismatchError(f"backend {self.backend.name}: MAGIC reads {magic:#x}, "
                                      f"not {MAGIC:#x}: this is not a gemmstone accelerator")
        version = self.read_register("MAP_VERSION")
        if version != MAP_VERSION:
            raise ConfigMismatchError(f"backend {self.backend.name}: register map version "
                                      f"{version}, this driver speaks version {MAP_VERSION}")
        self._check_ids(config_id(self.config), isa_id(),
                        f"the driver's config ({self.config.describe()})")

    def _check_ids(self, want_config: int, want_isa: int, whose: str) -> None:
        have_config, have_isa = self.read_register("CONFIG_ID"), self.read_register("ISA_ID")
        if have_config != want_config:
            raise ConfigMismatchError(
                f"{whose} has config ID {want_config:08x}, but the {self.backend.name} "
                f"device's hardware reports CONFIG_ID {have_config:08x} (built for another "
                f"AcceleratorConfig)")
        if have_isa != want_isa:
            raise ConfigMismatchError(
                f"{whose} has ISA ID {want_isa:08x}, but the {self.backend.name} device's "
                f"hardware reports ISA_ID {have_isa:08x} (another instruction set)")

    # -- memory -------------------------------------------------------------------------

    def alloc(self, size: int) -> Allocation:
        """Allocate ``size`` bytes of device memory (`OutOfDeviceMemoryError` if none)."""
        self._check_open()
        return self.allocator.allocate(size)

    def free(self, allocation: Allocation) -> None:
        """Free an allocation of `alloc`."""
        self._check_open()
        self.allocator.free(allocation)

    def copy_in(self, allocation: Allocation, data: bytes | np.ndarray, *,
                offset: int = 0) -> None:
        """Write ``data`` (bytes, or an array's raw bytes) at ``offset`` in ``allocation``.

        Raises
        ------
        ValueError
            The bytes do not fit the allocation.
        """
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        self._check_span(allocation, offset, len(raw))
        if raw:
            self._call(self.backend._write_mem, allocation.address + offset, raw)

    def copy_out(self, allocation: Allocation, size: int | None = None, *,
                 offset: int = 0) -> bytes:
        """``size`` bytes (the rest of the allocation by default) from ``offset`` in
        ``allocation``."""
        size = allocation.size - offset if size is None else size
        self._check_span(allocation, offset, size)
        if not size:
            return b""
        return self._call(self.backend._read_mem, allocation.address + offset, size)

    def _check_span(self, allocation: Allocation, offset: int, size: int) -> None:
        self._check_open()
        if offset < 0 or size < 0 or offset + size > allocation.size:
            raise ValueError(f"[{offset:#x}, {offset + size:#x}) does not fit the "
                             f"{allocation.size:#x}-byte allocation at {allocation.address:#x}")

    # -- programs -----------------------------------------------------------------------

    def load(self, program: Program) -> LoadedProgram:
        """Place ``program`` in device memory: its instructions, and its window zeroed and
        holding its constant segments.

        Raises
        ------
        ConfigMismatchError
            The program was built for another config or ISA than the hardware's
            CONFIG_ID / ISA_ID.
        OutOfDeviceMemoryError
            The program does not fit the free device memory.
        """
        self._check_open()
        if not isinstance(program, Program):
            raise TypeError(f"'program' must be a gemmstone.isa.Program, not {program!r}")
        self._check_ids(hash_id(program.config_hash), hash_id(program.isa_hash),
                        f"the program (built for config {program.config_hash[:12]})")
        program.validate_layout()
        code_bytes = words_to_bytes(program.words)
        code = self.alloc(len(code_bytes))
        try:
            window = self.alloc(program.window_size)
        except BaseException:
            self.free(code)
            raise
        loaded = LoadedProgram(self, program, code, window)
        try:
            self.copy_in(code, code_bytes)
            image = np.zeros(program.window_size, np.uint8)
            for segment in program.segments:
                image[segment.offset:segment.offset + len(segment.data)] = np.frombuffer(
                    segment.data, np.uint8)
            self.copy_in(window, image)
        except BaseException:
            if not self.closed:
                self.free_program(loaded)
            raise
        return loaded

    def free_program(self, loaded: LoadedProgram) -> None:
        """Free a loaded program's memory.

        Raises
        ------
        DeviceBusyError
            The program is running.
        """
        loaded._check_live()
        if self._running is loaded:
            raise DeviceBusyError("the program is running; wait for it or abort() it first")
        self.free(loaded.code)
        self.free(loaded.window)
        loaded.freed = True

    def execute(self, program: Program, inputs: Mapping[str, Any] | None = None, *,
                timeout: float | None = None, watchdog: int = 0) -> dict[str, np.ndarray]:
        """Load ``program``, write ``inputs`` (buffer name -> array), run it, read every
        buffer back and free it: the outputs by buffer name."""
        loaded = self.load(program)
        try:
            for name, value in (inputs or {}).items():
                loaded.write(name, value)
            self.run(loaded, timeout=timeout, watchdog=watchdog)
            return {name: loaded.read(name) for name in program.buffers}
        finally:
            if not self.closed and self._running is not loaded:
                self.free_program(loaded)

    # -- runs ---------------------------------------------------------------------------

    def run(self, loaded: LoadedProgram, *, timeout: float | None = None,
            watchdog: int = 0) -> dict[str, int]:
        """`start` ``loaded`` and `wait` for it; the counters of the run."""
        self.start(loaded, watchdog=watchdog)
        return self.wait(timeout)

    def start(self, loaded: LoadedProgram, *, watchdog: int = 0) -> None:
        """Start ``loaded`` with its window; ``watchdog`` cycles (0 = off) abort it.

        Raises
        ------
        DeviceBusyError
            A run is in progress.
        """
        self._check_open()
        loaded._check_live()
        if loaded.device is not self:
            raise DriverError("the program was loaded on another device")
        if not 0 <= watchdog < 1 << 32:
            raise ValueError(f"'watchdog' must be a 32-bit cycle count, not {watchdog!r}")
        if self.read_register("STATUS") & _BUSY:
            raise DeviceBusyError("a run is in progress; wait for it or abort() it first")
        for name, value in (("INSTR_BASE", loaded.code.address),
                            ("INSTR_COUNT", len(loaded.program.words)),
                            ("WINDOW_BASE", loaded.window.address),
                            ("WINDOW_LIMIT", loaded.window_limit),
                            ("WATCHDOG", watchdog)):
            self.write_register(name, value)
        self._running, self._watchdog = loaded, watchdog
        self.write_register("CONTROL", 1 << CONTROL_START.lsb)

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Wait for the started run to end; its counters.

        Raises
        ------
        gemmstone.isa.ExecutionError
            The program faulted: the subclass for ERROR_CODE, naming the instruction at
            ERROR_INDEX (with its disassembly) and ERROR_ADDR.
        DeviceTimeoutError
            The run did not end within ``timeout`` seconds (the device's timeout by
            default); it goes on until waited for again or aborted.
        DeviceLostError
            The backend stopped answering or died.
        """
        self._check_open()
        loaded = self._running
        if loaded is None:
            raise DriverError("no run was started")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        interval = _FIRST_POLL_CYCLES
        while (status := self.read_register("STATUS")) & _BUSY:
            if time.monotonic() >= deadline:
                raise DeviceTimeoutError(
                    f"the run of {len(loaded.program.words)} instructions did not finish "
                    f"within {timeout:g} s on backend {self.backend.name}; it is still "
                    f"running: wait() again or abort() it")
            self._call(self.backend._idle, interval)
            interval = min(2 * interval, _MAX_POLL_CYCLES)
        self._running = None
        if not status & _DONE:
            raise DriverError(f"the device is idle but STATUS ({status:#x}) says no run "
                              f"ended: was it reset?")
        if status & _ERROR:
            raise self._fault(loaded)
        return self.counters()

    def abort(self) -> None:
        """Stop the run in progress; memory and on-chip state are kept.

        The run is stopped the way the watchdog stops it: WATCHDOG is set to 1 cycle (the
        register block compares it with the live cycle count), so no new work is issued
        and transfers in flight complete, leaving the memory bus clean; the run then ends
        with a WATCHDOG error in the registers, which the next START clears. Only if it
        does not stop within the device's timeout is the core reset while busy
        (CONTROL.SOFT_RESET), which can leave a burst half-done on the bus.
        """
        self._check_open()
        if self.read_register("STATUS") & _BUSY:
            self.write_register("WATCHDOG", 1)
            deadline = time.monotonic() + self.timeout
            interval = _FIRST_POLL_CYCLES
            while self.read_register("STATUS") & _BUSY:
                if time.monotonic() >= deadline:
                    self.write_register("CONTROL", 1 << CONTROL_SOFT_RESET.lsb)
                    break
                self._call(self.backend._idle, interval)
                interval = min(2 * interval, _MAX_POLL_CYCLES)
        self._running = None

    def _fault(self, loaded: LoadedProgram) -> ExecutionError | DriverError:
        raw_code = self.read_register("ERROR_CODE")
        index = self.read_register("ERROR_INDEX")
        address = self.read_register("ERROR_ADDR")
        try:
            code = ErrorCode(raw_code)
        except ValueError:
            return DriverError(f"the device reports unknown error code {raw_code} at "
                               f"instruction {index}")
        words = loaded.program.words
        reason = None
        if index < len(words):
            try:
                text = str(decode(words[index]))
            except ExecutionError as error:
                text, reason = error.text, error.reason
        else:
            text = "<end of program>"
        if reason is None or code is not ErrorCode.ILLEGAL_INSTRUCTION:
            message = self._describe(code, address, loaded)
        else:
            message = f"{reason} (backend {self.backend.name})"
        kind = ERROR_TYPES.get(code)
        if kind is None:
            return DriverError(f"the device reports error code {code!r} at instruction "
                               f"{index} ({text})")
        kwargs = {"index": index, "text": text, "address": address}
        if kind is AddressError:
            return kind(message, code=code, **kwargs)
        return kind(message, **kwargs)

    def _describe(self, code: ErrorCode, address: int, loaded: LoadedProgram) -> str:
        c = self.config
        messages = {
            ErrorCode.ILLEGAL_INSTRUCTION: "the hardware rejects this instruction",
            ErrorCode.OPERAND: f"an operand is outside what the config allows "
                               f"({c.rows}x{c.cols} array, {c.line_bytes}-byte lines)",
            ErrorCode.SPAD_RANGE: f"scratchpad line {address} is out of range: the "
                                  f"scratchpad has {c.spad_lines} lines",
            ErrorCode.ACC_RANGE: f"accumulator row {address} is out of range: the "
                                 f"accumulator has {c.acc_rows} rows",
            ErrorCode.DMA_WINDOW: f"DRAM access up to offset {address:#x} leaves the "
                                  f"program's DMA window of {loaded.program.window_size:#x} "
                                  f"bytes",
            ErrorCode.TOKEN: "token error: a deadlock, a pop no push feeds, or tokens left "
                             "at halt",
            ErrorCode.WATCHDOG: f"the watchdog aborted the run after {self._watchdog} "
                                f"cycles",
            ErrorCode.PROGRAM_END: f"the program ended after {len(loaded.program.words)} "
                                   f"instructions without halt",
        }
        return messages.get(code, f"error {code.name}") + f" (backend {self.backend.name})"

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Release the backend; the device cannot be used afterwards. Closing twice is
        harmless."""
        if self.closed:
            return
        self.closed = True
        self._running = None
        self.backend._close()

    def _check_open(self) -> None:
        if self.closed:
            raise DeviceClosedError(f"the {self.backend.name} device is closed; open a new "
                                    f"Device")

    def _call(self, method, *args):
        """Call a backend method; a lost backend closes the device before the error
        propagates, so nothing is left running."""
        if self.closed:
            self._check_open()
        try:
            return method(*args)
        except DeviceLostError:
            self.close()
            raise
