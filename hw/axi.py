"""AXI4 and AXI4-Lite port signatures, flat, with the standard channel signal names.

Members carry the AMBA names (``araddr``, ``rdata``, ``wstrb``, ...), so a port ``m_axi`` of
these signatures becomes Verilog ports ``m_axi__araddr`` ... (Amaranth joins paths with
``__``): cocotbext-axi binds them with ``AxiBus.from_prefix(dut, "m_axi",
bus_separator="__")``, and `flat_port_names` renames them to the ``m_axi_araddr`` form
vendor IP expects. The signatures are written from the manager's (master's) side; a
subordinate (slave) port is ``In(signature)``, i.e. ``signature.flip()``.

Only the signals gemmstone drives are present. AXI4's optional ``*lock``, ``*cache``,
``*prot``, ``*qos``, ``*region`` and ``*user`` signals take their AXI defaults when absent
(normal, non-secure, non-cacheable, no QoS), which is what every gemmstone access is.
"""

from __future__ import annotations

import enum

from amaranth.hdl import Signal, ValueCastable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.hw.params import check_int, check_power_of_two

__all__ = [
    "AxiBurst", "AxiResp", "MAX_BURST_BEATS", "BOUNDARY_BYTES", "AxiReadSignature",
    "AxiWriteSignature", "AxiSignature", "AxiLiteSignature", "flat_port_names",
]

#: Longest INCR burst AXI4 allows, in beats.
MAX_BURST_BEATS = 256
#: No AXI burst may cross a multiple of this many bytes.
BOUNDARY_BYTES = 4096


class AxiBurst(enum.IntEnum):
    """Values of ``arburst`` / ``awburst``."""

    FIXED = 0
    INCR = 1
    WRAP = 2


class AxiResp(enum.IntEnum):
    """Values of ``rresp`` / ``bresp``; bit 1 set means the access failed."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check_widths(addr_width: object, data_bytes: object, id_width: object) -> None:
    check_int("addr_width", addr_width, minimum=12)
    check_power_of_two("data_bytes", data_bytes)
    if data_bytes > 128:
        raise ValueError(f"'data_bytes' must be at most 128 (AXI4), not {data_bytes}")
    check_int("id_width", id_width)


def _read_members(addr_width: int, data_bytes: int, id_width: int) -> dict:
    return {
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(8 * data_bytes), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    }


def _write_members(addr_width: int, data_bytes: int, id_width: int) -> dict:
    return {
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(8 * data_bytes), "wstrb": Out(data_bytes), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    }


class _AxiSignatureBase(wiring.Signature):
    _members = None

    def __init__(self, *, addr_width: int = 32, data_bytes: int, id_width: int = 1) -> None:
        _check_widths(addr_width, data_bytes, id_width)
        self.addr_width = addr_width
        self.data_bytes = data_bytes
        self.id_width = id_width
        super().__init__(type(self)._members(addr_width, data_bytes, id_width))

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_bytes == self.data_bytes and other.id_width == self.id_width)

    def __hash__(self) -> int:
        return hash((type(self), self.addr_width, self.data_bytes, self.id_width))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(addr_width={self.addr_width}, "
                f"data_bytes={self.data_bytes}, id_width={self.id_width})")


class AxiReadSignature(_AxiSignatureBase):
    """The read half of an AXI4 manager port: address-read (AR) and read-data (R) channels.

    Parameters
    ----------
    addr_width : int
        Address bits (at least 12, so the 4 KiB burst boundary is inside the address).
    data_bytes : int
        Data bus width in bytes, a power of two up to 128.
    id_width : int
        Transaction ID bits.

    Members
    -------
    arid, araddr, arlen, arsize, arburst, arvalid : ``Out``
        Read address channel.
    arready : ``In(1)``
    rid, rdata, rresp, rlast, rvalid : ``In``
        Read data channel.
    rready : ``Out(1)``

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If ``addr_width < 12``, ``data_bytes`` is not a power of two up to 128 or
        ``id_width < 1``.
    """

    _members = staticmethod(_read_members)


class AxiWriteSignature(_AxiSignatureBase):
    """The write half of an AXI4 manager port: AW, W and B channels.

    Parameters and exceptions as `AxiReadSignature`.

    Members
    -------
    awid, awaddr, awlen, awsize, awburst, awvalid : ``Out``
        Write address channel.
    awready : ``In(1)``
    wdata, wstrb, wlast, wvalid : ``Out``
        Write data channel; ``wstrb`` has one bit per data byte.
    wready : ``In(1)``
    bid, bresp, bvalid : ``In``
        Write response channel.
    bready : ``Out(1)``
    """

    _members = staticmethod(_write_members)


class AxiSignature(_AxiSignatureBase):
    """A whole AXI4 manager port: the members of `AxiWriteSignature` and
    `AxiReadSignature` side by side. Parameters as `AxiReadSignature`."""

    _members = staticmethod(lambda a, d, i: {**_write_members(a, d, i),
                                             **_read_members(a, d, i)})


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite manager port with a 32-bit data bus (the register interface).

    Parameters
    ----------
    addr_width : int
        Address bits (byte addresses; registers are 32-bit words).

    Members
    -------
    awaddr, awvalid / awready, wdata, wstrb, wvalid / wready, bresp, bvalid / bready,
    araddr, arvalid / arready, rdata, rresp, rvalid / rready
        The five AXI4-Lite channels; directions as seen from the manager.

    Raises
    ------
    TypeError
        If ``addr_width`` is not an integer.
    ValueError
        If ``addr_width < 3``.
    """

    def __init__(self, *, addr_width: int) -> None:
        check_int("addr_width", addr_width, minimum=3)
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.addr_width == self.addr_width

    def __hash__(self) -> int:
        return hash((type(self), self.addr_width))

    def __repr__(self) -> str:
        return f"AxiLiteSignature(addr_width={self.addr_width})"


def flat_port_names(component: wiring.Component) -> dict[str, tuple]:
    """Ports of ``component`` for `amaranth.back.verilog.convert`, named by their member
    path joined with ``_`` (``m_axi_araddr``) instead of Amaranth's ``__``.

    Returns
    -------
    dict
        ``{name: (signal, None)}`` for every signal member (Amaranth infers directions).

    Raises
    ------
    TypeError
        If ``component`` is not a `wiring.Component`.
    ValueError
        If two member paths give the same name (``a_b.c`` and ``a.b_c``).
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"'component' must be a wiring.Component, not {component!r}")
    ports: dict[str, tuple] = {}
    for path, _member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if not isinstance(value, Signal):
            continue  # a constant member (an always-ready stream's ready) has no port
        name = "_".join(map(str, path))
        if name in ports:
            raise ValueError(f"two ports of {type(component).__name__} are named {name!r}")
        ports[name] = (value, None)
    return ports
