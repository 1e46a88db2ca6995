"""The binary program container: what a compiler writes and every backend runs.

Layout (little-endian)::

    magic        8 bytes  b"GEMSPROG"
    version      u32
    config hash  32 bytes   SHA-256 of the AcceleratorConfig the program was built for
    isa hash     32 bytes   SHA-256 of the instruction table
    window size  u64        bytes of DMA window the program uses (offsets 0..size)
    counts       u32 x 3    instruction words, constant segments, metadata bytes
    words        16 bytes each
    segments     u16 name length, name, u64 offset, u64 length, data
    metadata     UTF-8 JSON: named buffers (inputs, outputs, scratch) and free-form notes
    crc32        u32 over everything before it

Offsets are relative to the DMA window base, so a program runs wherever the driver places
its window.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.assembly import disassemble
from gemmstone.isa.encoding import bytes_to_words, words_to_bytes
from gemmstone.isa.errors import ProgramFormatError
from gemmstone.isa.table import WORD_BYTES, isa_hash

__all__ = ["Program", "Segment", "Buffer", "MAGIC", "FORMAT_VERSION"]

MAGIC = b"GEMSPROG"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI32s32sQIII")
_SEGMENT = struct.Struct("<QQ")
_DTYPES = {"int8": 1, "uint8": 1, "int32": 4}


@dataclass(frozen=True)
class Segment:
    """Constant bytes copied to ``offset`` in the DMA window before the program runs."""

    name: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Buffer:
    """A named tensor in the DMA window (input, output or scratch), row-major."""

    name: str
    offset: int
    shape: tuple[int, ...]
    dtype: str = "int8"

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * _DTYPES[self.dtype]


@dataclass
class Program:
    """Instruction words, constants and named buffers for one config."""

    config_hash: str
    words: list[int]
    window_size: int
    segments: list[Segment] = field(default_factory=list)
    buffers: dict[str, Buffer] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    isa_hash: str = field(default_factory=isa_hash)

    def check_config(self, config: AcceleratorConfig) -> None:
        """Raise `ProgramFormatError` unless this program was built for ``config`` and this
        ISA."""
        if self.config_hash != config.content_hash:
            raise ProgramFormatError(
                f"program was built for config {self.config_hash[:12]}, not for this "
                f"accelerator's config {config.content_hash[:12]} ({config.describe()})"
            )
        if self.isa_hash != isa_hash():
            raise ProgramFormatError(
                f"program was built for ISA {self.isa_hash[:12]}, this is ISA {isa_hash()[:12]}"
            )

    # -- serialization ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The container's bytes. Raises `ProgramFormatError` if a segment or buffer lies
        outside the window (such a file could not be loaded back)."""
        self.validate_layout()
        meta = json.dumps({
            "buffers": [[b.name, b.offset, list(b.shape), b.dtype] for b in self.buffers.values()],
            "notes": self.notes,
        }, sort_keys=True).encode()
        parts = [_HEADER.pack(MAGIC, FORMAT_VERSION, bytes.fromhex(self.config_hash),
                              bytes.fromhex(self.isa_hash), self.window_size, len(self.words),
                              len(self.segments), len(meta)),
                 words_to_bytes(self.words)]
        for seg in self.segments:
            name = seg.name.encode()
            parts += [struct.pack("<H", len(name)), name,
                      _SEGMENT.pack(seg.offset, len(seg.data)), seg.data]
        parts.append(meta)
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, *, config: AcceleratorConfig | None = None) -> Program:
        """Parse a container; with ``config``, also check it was built for that config.

        Raises
        ------
        ProgramFormatError
            Not a program, truncated, corrupt (checksum), a newer format, or another config.
        """
        if len(data) < _HEADER.size + 4 or not data.startswith(MAGIC):
            raise ProgramFormatError("not a gemmstone program (bad magic or too short)")
        body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
        if zlib.crc32(body) != crc:
            raise ProgramFormatError("program is corrupt: checksum mismatch")
        (_, version, config_hash, program_isa, window, n_words, n_segments,
         meta_len) = _HEADER.unpack_from(body)
        if version != FORMAT_VERSION:
            raise ProgramFormatError(f"program format version {version} is not supported "
                                     f"(this gemmstone reads version {FORMAT_VERSION})")
        reader = _Reader(body, _HEADER.size)
        words = bytes_to_words(reader.take(n_words * WORD_BYTES, "instructions"))
        segments = []
        for _ in range(n_segments):
            (name_len,) = struct.unpack("<H", reader.take(2, "segment header"))
            name = reader.take(name_len, "segment name").decode(errors="replace")
            offset, length = _SEGMENT.unpack(reader.take(_SEGMENT.size, "segment header"))
            segments.append(Segment(name, offset, reader.take(length, f"segment {name!r}")))
        meta_text = reader.take(meta_len, "metadata")
        try:
            meta = json.loads(meta_text)
        except ValueError:
            raise ProgramFormatError("program metadata is not valid JSON") from None
        if reader.pos != len(body):
            raise ProgramFormatError(f"{len(body) - reader.pos} unexpected bytes at the end")
        try:
            buffers = {name: Buffer(name, offset, tuple(shape), dtype)
                       for name, offset, shape, dtype in meta["buffers"]}
            notes = dict(meta["notes"])
        except (KeyError, TypeError, ValueError):
            raise ProgramFormatError("program metadata does not hold buffers and notes") from None
        program = cls(
            config_hash=config_hash.hex(), isa_hash=program_isa.hex(), words=words,
            window_size=window, segments=segments, buffers=buffers, notes=notes,
        )
        program.validate_layout()
        if config is not None:
            program.check_config(config)
        return program

    def validate_layout(self) -> None:
        """Every segment and buffer lies inside the window."""
        for kind, name, start, size in (
            [("segment", s.name, s.offset, len(s.data)) for s in self.segments]
            + [("buffer", b.name, b.offset, b.nbytes) for b in self.buffers.values()]
        ):
            if start < 0 or start + size > self.window_size:
                raise ProgramFormatError(
                    f"{kind} {name!r} [{start:#x}, {start + size:#x}) lies outside the "
                    f"program's window of {self.window_size:#x} bytes"
                )

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, *, config: AcceleratorConfig | None = None) -> Program:
        return cls.from_bytes(Path(path).read_bytes(), config=config)

    def text(self) -> str:
        """Readable listing: header, buffers and segments as comments, then the assembly."""
        lines = [f"# config {self.config_hash[:16]}  isa {self.isa_hash[:16]}",
                 f"# window {self.window_size:#x} bytes, {len(self.words)} instructions"]
        lines += [f"# buffer {b.name}: {b.dtype}{list(b.shape)} at {b.offset:#x}"
                  for b in self.buffers.values()]
        lines += [f"# segment {s.name}: {len(s.data)} bytes at {s.offset:#x}"
                  for s in self.segments]
        return "\n".join(lines) + "\n" + disassemble(self.words)


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise ProgramFormatError(f"program is truncated in its {what}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk
