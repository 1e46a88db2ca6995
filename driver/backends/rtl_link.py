"""The request/reply protocol between the ``rtl`` backend (in the user's process) and its
simulation server (`rtl_server`, inside the Verilator process), over a Unix socket.

Every message is a fixed header ``<B Q Q`` and an optional payload:

- request: (op, a, b), then ``b`` payload bytes for `Op.WRITE_MEM`;
- reply: (status, value, payload length), then the payload (memory read, or an error
  message when status is `STATUS_FAILED`).

The server opens the conversation with a `Op.HELLO` reply whose value is its process ID.
Plain ``struct`` framing rather than pickle: the two sides share no Python objects.
"""

from __future__ import annotations

import enum
import socket
import struct

__all__ = ["Op", "HEADER", "STATUS_OK", "STATUS_FAILED", "LinkClosedError", "send",
           "receive"]

HEADER = struct.Struct("<BQQ")
STATUS_OK = 0
STATUS_FAILED = 1


class Op(enum.IntEnum):
    """Requests the server executes."""

    HELLO = 0      # (server -> driver only) value = simulator process ID
    READ_REG = 1   # a = byte offset -> value
    WRITE_REG = 2  # a = byte offset, b = value
    READ_MEM = 3   # a = bus address, b = size -> payload
    WRITE_MEM = 4  # a = bus address, b = size, payload
    RUN = 5        # a = clock cycles to simulate
    CLOSE = 6      # end the simulation


class LinkClosedError(ConnectionError):
    """The other side closed the connection."""


def send(link: socket.socket, code: int, a: int = 0, b: int = 0, payload: bytes = b"") -> None:
    """Send one message (a request, or a reply with ``a`` = value, ``b`` = payload size)."""
    link.sendall(HEADER.pack(code, a, b) + payload)


def _exactly(link: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = link.recv(min(left, 1 << 20))
        if not chunk:
            raise LinkClosedError("the connection was closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(link: socket.socket, *, payload_in_b: bool) -> tuple[int, int, int, bytes]:
    """One message: (code, a, b, payload). A request carries a payload only for
    `Op.WRITE_MEM`; a reply always carries ``b`` bytes (``payload_in_b``)."""
    code, a, b = HEADER.unpack(_exactly(link, HEADER.size))
    with_payload = payload_in_b or code == Op.WRITE_MEM
    return code, a, b, _exactly(link, b) if with_payload and b else b""
