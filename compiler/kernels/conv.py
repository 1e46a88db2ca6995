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
only zero lines. Runs that continue each other in DRAM without padding between them
(whole rows of a 1x1 convolution, or of the centre column of a padded 3x3) are one LOAD.
"""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.gemm import Residual, emit_tiled_matmul
from gemmstone.isa.program import Buffer

__all__ = ["emit_conv2d", "conv2d_output_shape", "conv_gather"]

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


def conv_gather(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int, int, int]) -> tuple[float, float]:
    """``(run, fill)`` of the A gather (`cost.estimate_cycles`'s ``a_gather``): output
    pixels per LOAD on average over the kernel taps (an output row, or a whole tile where
    rows continue each other in DRAM) and the fraction of A lines read from DRAM rather
    than padding. ``padding`` is (top, left, bottom, right)."""
    (kh, kw), (sh, sw), (ph, pw, pb, pr) = kernel, stride, padding
    ho, wo = (height + ph + pb - kh) // sh + 1, (width + pw + pr - kw) // sw + 1
    rows_in = [sum(0 <= oy * sh - ph + y < height for oy in range(ho)) for y in range(kh)]
    cols_in = [sum(0 <= ox * sw - pw + x < width for ox in range(wo)) for x in range(kw)]
    fill = sum(rows_in) / (kh * ho) * sum(cols_in) / (kw * wo)
    # A tap whose rows hold no padding and follow each other in DRAM is one LOAD.
    contiguous = sh == 1 and wo * sw == width
    joined = sum(count == wo for count in cols_in) / kw if contiguous else 0.0
    return (wo / (1 - joined) if joined < 1 else float(1 << 12)), fill


def emit_conv2d(builder: ProgramBuilder, x: Buffer, w: Buffer, out: Buffer,
                qparams: Buffer | None = None, *, kernel_size: int | tuple[int, int],
                stride: int | tuple[int, int] = 1,
                padding: int | tuple[int, int] | tuple[int, int, int, int] = 0,
                zp: int = 0, lo: int = -128, hi: int = 127, block_m: int | None = None,
                nbuf: int | None = None, a_panels: int | None = None,
                in_channels: tuple[int, int] | None = None,
                out_col: int = 0, residual: Residual | None = None,
                cout: int | None = None) -> dict:
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
    zp, lo, hi, block_m, nbuf, a_panels
        As in `gemm.emit_tiled_matmul`.
    in_channels : (first, count), optional
        Convolve only input channels ``first .. first + count`` (one group of a grouped
        convolution); ``w`` then has ``KH * KW * count`` rows.
    out_col, residual
        As in `gemm.emit_tiled_matmul`: with ``out_col`` (or an ``out`` with more channels
        than ``w`` has columns) the result fills a channel slice of ``out``.
    cout : int, optional
        Output channels computed: the first ``cout`` columns of ``w`` (default all; wider
        rows keep the weights' DRAM lines on bus beats).

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
    if cout is None:
        cout = w.shape[1]
    elif not 1 <= cout <= w.shape[1]:
        raise ValueError(f"'cout' must be from 1 to the {w.shape[1]} columns of 'w', not "
                         f"{cout}")
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

    kh_s = np.array([kh for kh, _, _ in steps], np.int64)[:, None]
    kw_s = np.array([kw for _, kw, _ in steps], np.int64)[:, None]
    c0_s = np.array([c0 for _, _, c0 in steps], np.int64)[:, None]
    first_ox, end_ox = np.array(first_ox)[kw_s], np.array(end_ox)[kw_s]
    stride_bytes = sw * x_channels

    def load_a(m0: int, mb: int) -> dict[str, np.ndarray]:
        # Runs of output pixels on one output row (at most _MAX_PAD: a run's padding
        # must fit pad_lo/pad_hi), the same for every k step.
        runs = []
        pixel = m0
        while pixel < m0 + mb:
            image, rest = divmod(pixel, ho * wo)
            oy, ox = divmod(rest, wo)
            count = min(wo - ox, m0 + mb - pixel, _MAX_PAD)
            runs.append((image, oy, ox, count, pixel - m0))
            pixel += count
        image, oy, ox, count, line = (np.array(v, np.int64)[None, :]
                                      for v in zip(*runs, strict=True))
        # Per (k step, run): the run's pixels whose input lies inside the image.
        iy = oy * sh - ph + kh_s
        inside = (iy >= 0) & (iy < height)
        end = ox + count
        lo_ox = np.where(inside, np.minimum(np.maximum(first_ox, ox), end), end)
        hi_ox = np.where(inside, np.maximum(np.minimum(end_ox, end), lo_ox), end)
        ix = lo_ox * sw - pw + kw_s
        dram = (x.offset + ((image * height + iy) * width + ix) * x_channels + c_first
                + c0_s)
        n = hi_ox - lo_ox
        pad_lo, pad_hi = lo_ox - ox, end - hi_ox
        # One LOAD for consecutive runs that continue each other in DRAM with no padding
        # between them (e.g. whole rows of a 1x1 or of a centre kernel column).
        joins = np.zeros(n.shape, bool)
        joins[:, 1:] = ((n[:, :-1] > 0) & (n[:, 1:] > 0) & (pad_hi[:, :-1] == 0)
                        & (pad_lo[:, 1:] == 0)
                        & (dram[:, 1:] == dram[:, :-1] + n[:, :-1] * stride_bytes))
        starts = np.flatnonzero(~joins.ravel())
        ends = np.append(starts[1:], joins.size) - 1
        step = np.broadcast_to(np.arange(len(steps))[:, None], n.shape).ravel()
        return {"step": step[starts], "line": np.broadcast_to(line, n.shape).ravel()[starts],
                "dram": dram.ravel()[starts], "stride": np.full(len(starts), stride_bytes),
                "n": np.add.reduceat(n.ravel(), starts),
                "len": np.minimum(rows, channels - c0_s.ravel())[step[starts]],
                "pad_lo": pad_lo.ravel()[starts], "pad_hi": pad_hi.ravel()[ends]}

    k_steps = [((kh * kw_size + kw) * channels + c0, min(rows, channels - c0))
               for kh, kw, c0 in steps]
    return emit_tiled_matmul(builder, m=batch * ho * wo, k_steps=k_steps, load_a=load_a,
                             w=w, out=out, qparams=qparams, zp=zp, lo=lo, hi=hi,
                             block_m=block_m, nbuf=nbuf, a_panels=a_panels,
                             out_stride=out_channels,
                             out_col=out_col, residual=residual, n=cout,
                             a_gather=conv_gather(height, width, (kh_size, kw_size), (sh, sw),
                                                  (ph, pw, pb, pr)))
