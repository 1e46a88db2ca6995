"""2-D convolution kernel as an implicit GEMM (no im2col copy in DRAM).

The GEMM rows are output pixels (batch, oy, ox) in row-major order, the columns are output
channels, and the reduction runs over (kh, kw, input channel) in that order, which is the
row order of the [KH * KW * C, Cout] weight matrix. Each k step is one (kh, kw) and a chunk
of <= ``rows`` input channels, so its weight tile is a contiguous run of weight rows and
`gemm.emit_tiled_matmul` does the rest.

The A tile of a step is gathered straight from the NHWC input: for each run of output
pixels on one output row, one LOAD reads input pixels ``stride`` apart (DRAM stride
``stride * C`` bytes, ``len`` = the chunk's channels), and its ``pad_lo``/``pad_hi`` zero
lines stand for the pixels whose input lies left or right of the image. For an output row
whose input row lies above or below the image, the LOAD reads nothing (n = 0) and writes
only zero lines.
"""

from __future__ import annotations

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.gemm import Residual, emit_tiled_matmul
from gemmstone.isa.program import Buffer

__all__ = ["emit_conv2d", "conv2d_output_shape"]

_MAX_PAD = (1 << 8) - 1  # pad_lo and pad_hi of LOAD are 8 bits wide


def _pair(name: str, value: int | tuple[int, int], low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < low for v in pair):
        raise ValueError(f"'{name}' must be an integer >= {low} or a pair of them, "
                         f"not {value!r}")
    return pair


def conv2d_output_shape(height: int, width: int, kernel_size: int | tuple[int, int],
                        stride: int | tuple[int, int] = 1,
                        padding: int | tuple[int, int] = 0) -> tuple[int, int]:
    """(Ho, Wo) of a convolution with symmetric zero padding."""
    (kh, kw), (sh, sw), (ph, pw) = (_pair("kernel_size", kernel_size, 1),
                                    _pair("stride", stride, 1), _pair("padding", padding, 0))
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def emit_conv2d(builder: ProgramBuilder, x: Buffer, w: Buffer, out: Buffer,
                qparams: Buffer | None = None, *, kernel_size: int | tuple[int, int],
                stride: int | tuple[int, int] = 1,
                padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
                zp: int = 0, lo: int = -128, hi: int = 127, block_m: int | None = None,
                nbuf: int | None = None, in_channels: tuple[int, int] | None = None,
                out_col: int = 0, residual: Residual | None = None) -> dict:
    """Emit ``out = requant(conv2d(x, w))``.

    Parameters
    ----------
    builder : ProgramBuilder
    x : gemmstone.isa.Buffer
        int8 NHWC input, [N, H, W, C] or [H, W, C].
    w : gemmstone.isa.Buffer
        int8 weights [KH * KW * C, Cout], rows in (kh, kw, c) order.
    out : gemmstone.isa.Buffer
        [N, Ho, Wo, Cout] (or [Ho, Wo, Cout]); int8 through the output stage, int32 raw.
    qparams : gemmstone.isa.Buffer, optional
        int32 [3 * Cout] from `gemm.pack_qparams`; required for an int8 output.
    kernel_size, stride : int or (int, int)
        (height, width) of the kernel and the stride.
    padding : int, (int, int) or (top, left, bottom, right)
        Zero padding: the same on each side, per dimension, or per side.
    zp, lo, hi, block_m, nbuf
        As in `gemm.emit_gemm`.
    in_channels : (first, count), optional
        Convolve only input channels ``first .. first + count`` (one group of a grouped
        convolution); ``w`` then has ``KH * KW * count`` rows.
    out_col, residual
        As in `gemm.emit_tiled_matmul`: with ``out_col`` (or an ``out`` with more channels
        than ``w`` has columns) the result fills a channel slice of ``out``.

    Returns
    -------
    dict
        The tiling, as `gemm.emit_tiled_matmul` returns it.

    Raises
    ------
    ValueError
        Shapes or dtypes that do not match, or bad output stage parameters.
    """
    (kh_size, kw_size) = _pair("kernel_size", kernel_size, 1)
    sh, sw = _pair("stride", stride, 1)
    if isinstance(padding, tuple) and len(padding) == 4:
        if any(not isinstance(v, int) or v < 0 for v in padding):
            raise ValueError(f"'padding' must be integers >= 0, not {padding!r}")
        ph, pw, pb, pr = padding
    else:
        ph, pw = _pair("padding", padding, 0)
        pb, pr = ph, pw
    if x.dtype != "int8" or len(x.shape) not in (3, 4):
        raise ValueError(f"'x' must be an int8 [N, H, W, C] or [H, W, C] buffer, not "
                         f"{x.dtype}{list(x.shape)}")
    batch, height, width, x_channels = x.shape if len(x.shape) == 4 else (1, *x.shape)
    c_first, channels = in_channels or (0, x_channels)
    if c_first < 0 or channels < 1 or c_first + channels > x_channels:
        raise ValueError(f"'in_channels' {in_channels} is not a channel range of the "
                         f"{x_channels}-channel input")
    if len(w.shape) != 2 or w.shape[0] != kh_size * kw_size * channels:
        raise ValueError(f"'w' must be [KH * KW * C, Cout] = [{kh_size * kw_size * channels}"
                         f", Cout], not {list(w.shape)}")
    cout = w.shape[1]
    ho = (height + ph + pb - kh_size) // sh + 1
    wo = (width + pw + pr - kw_size) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh_size}x{kw_size} kernel does not fit the {height}x{width} "
                         f"input with padding {(ph, pw, pb, pr)}")
    out_channels = out.shape[-1] if len(out.shape) == len(x.shape) else cout
    expected = (batch, ho, wo, out_channels) if len(x.shape) == 4 else (ho, wo, out_channels)
    if out.shape != expected or out_col + cout > out_channels:
        # A wider 'out' takes the result in channels out_col .. out_col + Cout.
        raise ValueError(f"'out' must have shape {list(expected[:-1]) + [cout]}, not "
                         f"{list(out.shape)}")

    rows = builder.config.rows
    steps = [(kh, kw, c0) for kh in range(kh_size) for kw in range(kw_size)
             for c0 in range(0, channels, rows)]
    # Output columns ox whose input column ox * sw - pw + kw lies inside the image.
    first_ox = [max(0, -(-(pw - kw) // sw)) for kw in range(kw_size)]
    end_ox = [(width - 1 + pw - kw) // sw + 1 for kw in range(kw_size)]

    def load_a(step: int, m0: int, mb: int, line: int) -> None:
        kh, kw, c0 = steps[step]
        cc = min(rows, channels - c0)
        pixel = m0
        while pixel < m0 + mb:
            image, rest = divmod(pixel, ho * wo)
            oy, ox = divmod(rest, wo)
            count = min(wo - ox, m0 + mb - pixel, _MAX_PAD)
            iy = oy * sh - ph + kh
            if 0 <= iy < height:
                lo_ox = min(max(first_ox[kw], ox), ox + count)
                hi_ox = max(min(end_ox[kw], ox + count), lo_ox)
            else:
                lo_ox = hi_ox = ox + count
            ix = lo_ox * sw - pw + kw
            dram = (x.offset + ((image * height + iy) * width + ix) * x_channels + c_first
                    + c0)
            builder.emit("load", dram=dram if hi_ox > lo_ox else 0, stride=sw * x_channels,
                         spad=line + pixel - m0, n=hi_ox - lo_ox, len=cc,
                         pad_lo=lo_ox - ox, pad_hi=ox + count - hi_ox)
            pixel += count

    k_steps = [((kh * kw_size + kw) * channels + c0, min(rows, channels - c0))
               for kh, kw, c0 in steps]
    return emit_tiled_matmul(builder, m=batch * ho * wo, k_steps=k_steps, load_a=load_a,
                             w=w, out=out, qparams=qparams, zp=zp, lo=lo, hi=hi,
                             block_m=block_m, nbuf=nbuf, out_stride=out_channels,
                             out_col=out_col, residual=residual)
