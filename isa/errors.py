"""Error codes the accelerator reports, and the exceptions that carry them to Python.

The RTL's error-code register, the functional model and the driver share `ErrorCode`, so a
fault reads the same on every backend. Each exception names the instruction index and its
disassembly so a user can find the faulting line of a program.
"""

from __future__ import annotations

import enum

__all__ = [
    "ErrorCode", "EncodingError", "AssemblyError", "ProgramFormatError", "ExecutionError",
    "IllegalInstructionError", "OperandError", "AddressError", "DmaWindowError",
    "TokenError", "WatchdogError", "ProgramEndError", "ERROR_TYPES",
]


class ErrorCode(enum.IntEnum):
    """Values of the accelerator's error-code register."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1  # unknown opcode, reserved bit set, bad enum value or token
    OPERAND = 2              # an operand outside what the config allows (len, k, lo > hi)
    SPAD_RANGE = 3           # scratchpad line out of range
    ACC_RANGE = 4            # accumulator row out of range
    DMA_WINDOW = 5           # DRAM access outside the DMA window
    TOKEN = 6                # token deadlock, underflow, or tokens left at halt
    WATCHDOG = 7             # the program ran longer than the watchdog allows
    PROGRAM_END = 8          # the instruction stream ended without halt


class EncodingError(ValueError):
    """An instruction cannot be encoded: unknown mnemonic or field, or a value that does not
    fit its field."""


class AssemblyError(ValueError):
    """Assembly text does not parse; the message names the line."""


class ProgramFormatError(ValueError):
    """A program container is corrupt, truncated, or built for another config or ISA."""


class ExecutionError(RuntimeError):
    """A program faulted while running.

    Members
    -------
    code : ErrorCode
    index : int or None
        Index of the faulting instruction in the program.
    text : str
        Its disassembly (or a description when it does not decode).
    address : int or None
        The faulting address, where there is one (DRAM offset, scratchpad line, ...).
    """

    code = ErrorCode.NONE

    def __init__(self, message: str, *, index: int | None = None, text: str = "",
                 address: int | None = None) -> None:
        where = f"instruction {index} ({text}): " if index is not None else ""
        super().__init__(where + message)
        self.index = index
        self.text = text
        self.address = address
        self.reason = message


class IllegalInstructionError(ExecutionError):
    code = ErrorCode.ILLEGAL_INSTRUCTION


class OperandError(ExecutionError):
    code = ErrorCode.OPERAND


class AddressError(ExecutionError):
    """A scratchpad or accumulator access out of range (code tells which)."""

    code = ErrorCode.SPAD_RANGE

    def __init__(self, message: str, *, code: ErrorCode, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.code = code


class DmaWindowError(ExecutionError):
    code = ErrorCode.DMA_WINDOW


class TokenError(ExecutionError):
    code = ErrorCode.TOKEN


class WatchdogError(ExecutionError):
    code = ErrorCode.WATCHDOG


class ProgramEndError(ExecutionError):
    code = ErrorCode.PROGRAM_END


ERROR_TYPES: dict[ErrorCode, type[ExecutionError]] = {
    ErrorCode.ILLEGAL_INSTRUCTION: IllegalInstructionError,
    ErrorCode.OPERAND: OperandError,
    ErrorCode.SPAD_RANGE: AddressError,
    ErrorCode.ACC_RANGE: AddressError,
    ErrorCode.DMA_WINDOW: DmaWindowError,
    ErrorCode.TOKEN: TokenError,
    ErrorCode.WATCHDOG: WatchdogError,
    ErrorCode.PROGRAM_END: ProgramEndError,
}
