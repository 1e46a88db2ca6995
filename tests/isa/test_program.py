"""The program container: byte-exact round trip, and a clear ProgramFormatError for every
kind of bad file."""

from __future__ import annotations

import re
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemmstone.config import preset
from gemmstone.isa.assembly import assemble
from gemmstone.isa.errors import ProgramFormatError
from gemmstone.isa.program import FORMAT_VERSION, MAGIC, Buffer, Program, Segment
from gemmstone.isa.table import isa_hash

CONFIG = preset("tiny")
_HEADER = struct.Struct("<8sI32s32sQIII")  # the layout the program module's docstring gives


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _program(**changes) -> Program:
    values = {
        "config_hash": CONFIG.content_hash,
        "words": assemble("load dram=0x40 n=1 len=4 push_next\npreload k=4 pop_prev\nhalt"),
        "window_size": 0x100,
        "segments": [Segment("weights", 0x40, bytes(range(16)))],
        "buffers": {"x": Buffer("x", 0x0, (4, 4)), "y": Buffer("y", 0x80, (2, 4), "int32")},
        "notes": {"kernel": "gemm", "shape": [4, 4, 4]},
    }
    return Program(**(values | changes))


def _reseal(body: bytes) -> bytes:
    """A body with a valid checksum, to reach the checks after the CRC."""
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip(tmp_path) -> None:
    program = _program()
    data = program.to_bytes()
    assert Program.from_bytes(data, config=CONFIG) == program
    path = tmp_path / "p.gem"
    program.save(path)
    assert path.read_bytes() == data
    assert Program.load(path, config=CONFIG) == program


def test_header_layout() -> None:
    """The fields lie where the documented layout says."""
    program = _program()
    data = program.to_bytes()
    magic, version, config_hash, program_isa, window, n_words, n_segments, meta_len = (
        _HEADER.unpack_from(data))
    assert (magic, version) == (MAGIC, FORMAT_VERSION) == (b"GEMSPROG", 1)
    assert config_hash.hex() == CONFIG.content_hash
    assert program_isa.hex() == isa_hash()
    assert (window, n_words, n_segments) == (0x100, 3, 1)
    assert data[_HEADER.size:_HEADER.size + 16] == program.words[0].to_bytes(16, "little")
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert len(data) > meta_len > 0


_segments = st.lists(
    st.tuples(st.text(max_size=12), st.integers(0, 0x100), st.binary(max_size=0x40)),
    max_size=4)
_buffers = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 0x80),
              st.lists(st.integers(0, 4), min_size=1, max_size=3),
              st.sampled_from(["int8", "uint8", "int32"])),
    max_size=4)


@given(words=st.lists(st.integers(0, (1 << 128) - 1), max_size=8), segments=_segments,
       buffers=_buffers,
       notes=st.dictionaries(st.text(max_size=8), st.integers() | st.text(), max_size=3))
def test_round_trip_of_any_content(words, segments, buffers, notes) -> None:
    program = Program(
        config_hash=CONFIG.content_hash, words=words, window_size=0x200,
        segments=[Segment(name, offset, data) for name, offset, data in segments],
        buffers={name: Buffer(name, offset, tuple(shape), dtype)
                 for name, offset, shape, dtype in buffers},
        notes=notes)
    assert Program.from_bytes(program.to_bytes()) == program


def test_buffer_sizes() -> None:
    assert Buffer("a", 0, (3, 5)).nbytes == 15
    assert Buffer("a", 0, (3, 5), "int32").nbytes == 60
    assert Buffer("a", 0, ()).nbytes == 1


def test_text_listing() -> None:
    assert _program().text() == (
        f"# config {CONFIG.content_hash[:16]}  isa {isa_hash()[:16]}\n"
        "# window 0x100 bytes, 3 instructions\n"
        "# buffer x: int8[4, 4] at 0x0\n"
        "# buffer y: int32[2, 4] at 0x80\n"
        "# segment weights: 16 bytes at 0x40\n"
        "load     dram=0x40 stride=0 spad=0 n=1 len=4 pad_lo=0 pad_hi=0 push_next\n"
        "preload  spad=0 k=4 pop_prev\n"
        "halt\n")
    assert assemble(_program().text()) == _program().words


# -- bad files -----------------------------------------------------------------------------

def test_bad_magic() -> None:
    data = bytearray(_program().to_bytes())
    data[0:8] = b"GEMSPROX"
    with pytest.raises(ProgramFormatError,
                       match=_exactly("not a gemmstone program (bad magic or too short)")):
        Program.from_bytes(bytes(data))


def test_too_short() -> None:
    with pytest.raises(ProgramFormatError,
                       match=_exactly("not a gemmstone program (bad magic or too short)")):
        Program.from_bytes(MAGIC + bytes(20))


@pytest.mark.parametrize("position", [8, 100, -30, -1])
def test_checksum(position: int) -> None:
    data = bytearray(_program().to_bytes())
    data[position] ^= 0x01
    with pytest.raises(ProgramFormatError,
                       match=_exactly("program is corrupt: checksum mismatch")):
        Program.from_bytes(bytes(data))


@pytest.mark.parametrize("keep", [_HEADER.size + 5, _HEADER.size + 48 + 3, -10])
def test_truncated_file_fails_its_checksum(keep: int) -> None:
    data = _program().to_bytes()
    with pytest.raises(ProgramFormatError,
                       match=_exactly("program is corrupt: checksum mismatch")):
        Program.from_bytes(data[:keep])


@pytest.mark.parametrize(("cut", "what"), [
    (_HEADER.size + 40, "instructions"),
    (_HEADER.size + 48 + 1, "segment header"),
    (_HEADER.size + 48 + 2 + 3, "segment name"),
    (_HEADER.size + 48 + 2 + 7 + 16 + 8, "segment 'weights'"),
    (-5, "metadata"),
])
def test_truncated_with_a_valid_checksum(cut: int, what: str) -> None:
    """A file cut short and resealed (a writer that stopped early) names what is missing."""
    body = _program().to_bytes()[:-4]
    with pytest.raises(ProgramFormatError, match=_exactly(f"program is truncated in its {what}")):
        Program.from_bytes(_reseal(body[:cut]))


def test_trailing_bytes() -> None:
    body = _program().to_bytes()[:-4]
    with pytest.raises(ProgramFormatError, match=_exactly("3 unexpected bytes at the end")):
        Program.from_bytes(_reseal(body + b"xyz"))


def test_newer_format_version() -> None:
    body = bytearray(_program().to_bytes()[:-4])
    body[8:12] = struct.pack("<I", 2)
    with pytest.raises(ProgramFormatError, match=_exactly(
            "program format version 2 is not supported (this gemmstone reads version 1)")):
        Program.from_bytes(_reseal(bytes(body)))


def test_metadata_not_json() -> None:
    program = _program(segments=[], buffers={}, notes={})
    body = program.to_bytes()[:-4]
    meta = b'{"buffers": [], "notes": {}}'
    assert body.endswith(meta)
    broken = body[:-len(meta)] + b"{" + meta[1:].replace(b":", b";")
    with pytest.raises(ProgramFormatError, match=_exactly("program metadata is not valid JSON")):
        Program.from_bytes(_reseal(broken))


@pytest.mark.parametrize("meta", [b"[]", b'{"notes": {}}', b'{"buffers": [[1, 2]], "notes": {}}',
                                  b'{"buffers": [], "notes": 3}'])
def test_metadata_without_buffers_and_notes(meta: bytes) -> None:
    program = _program(segments=[], buffers={}, notes={})
    body = bytearray(program.to_bytes()[:-4])
    old_meta = b'{"buffers": [], "notes": {}}'
    body[-len(old_meta):] = meta
    body[_HEADER.size - 4:_HEADER.size] = struct.pack("<I", len(meta))
    with pytest.raises(ProgramFormatError,
                       match=_exactly("program metadata does not hold buffers and notes")):
        Program.from_bytes(_reseal(bytes(body)))


def test_wrong_config() -> None:
    data = _program().to_bytes()
    other = preset("small")
    with pytest.raises(ProgramFormatError, match=_exactly(
            f"program was built for config {CONFIG.content_hash[:12]}, not for this "
            f"accelerator's config {other.content_hash[:12]} ({other.describe()})")):
        Program.from_bytes(data, config=other)
    Program.from_bytes(data)  # without a config to check against, it loads


def test_wrong_isa() -> None:
    data = _program(isa_hash="ab" * 32).to_bytes()
    program = Program.from_bytes(data)
    assert program.isa_hash == "ab" * 32
    message = f"program was built for ISA abababababab, this is ISA {isa_hash()[:12]}"
    with pytest.raises(ProgramFormatError, match=_exactly(message)):
        Program.from_bytes(data, config=CONFIG)
    with pytest.raises(ProgramFormatError, match=_exactly(message)):
        program.check_config(CONFIG)


@pytest.mark.parametrize(("changes", "message"), [
    ({"segments": [Segment("w", 0xF8, bytes(16))]},
     "segment 'w' [0xf8, 0x108) lies outside the program's window of 0x100 bytes"),
    ({"segments": [Segment("w", 0x100, b"\x01")]},
     "segment 'w' [0x100, 0x101) lies outside the program's window of 0x100 bytes"),
    ({"buffers": {"y": Buffer("y", 0xC0, (4, 4), "int32")}},
     "buffer 'y' [0xc0, 0x100) lies outside the program's window of 0x40 bytes"),
])
def test_segment_or_buffer_outside_the_window(changes, message, monkeypatch) -> None:
    if "buffers" in changes:
        changes = changes | {"window_size": 0x40, "segments": []}
    program = _program(**changes)
    with pytest.raises(ProgramFormatError, match=_exactly(message)):
        program.to_bytes()
    # Such a file can still come from elsewhere: loading rejects it too.
    monkeypatch.setattr(Program, "validate_layout", lambda self: None)
    data = program.to_bytes()
    monkeypatch.undo()
    with pytest.raises(ProgramFormatError, match=_exactly(message)):
        Program.from_bytes(data)


def test_segment_ending_at_the_window_end_is_inside() -> None:
    program = _program(segments=[Segment("w", 0xF0, bytes(16))])
    assert Program.from_bytes(program.to_bytes()) == program
