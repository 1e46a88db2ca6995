"""Numpy reference implementations of the integer operators the kernels compute.

These are written straight from the ISA semantics (see `gemmstone.isa.table`), independently
of the functional model and of the kernels' tiling: tests compare programs run on the model
against them. Accumulation is int64 and then wrapped to int32 like the array's adders;
requantization uses Python integers, so no intermediate can overflow.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wrap_int32", "requantize", "gemm_int8", "conv2d_int8", "conv2d_output_size"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def wrap_int32(values: np.ndarray) -> np.ndarray:
    """Two's complement wrap of integers to int32, as MATMUL's int32 adders do."""
    wide = np.asarray(values, dtype=np.int64)
    return (((wide - _INT32_MIN) & 0xFFFF_FFFF) + _INT32_MIN).astype(np.int32)


def requantize(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
               zp: int = 0, lo: int = -128, hi: int = 127) -> np.ndarray:
    """STORE mode=int8: per column ``j`` of ``acc`` (int32 [..., N]) with int32 ``bias[j]``,
    ``mult[j]``, ``shift[j]`` (bits [5:0] used)::

        x = sat32(acc + bias); p = x * mult; s = shift & 63
        y = p if s == 0 else floor(p / 2**s + 1/2)     # round half up
        out = clip(y + zp, lo, hi)                      # int8
    """
    acc = np.asarray(acc, dtype=np.int64).astype(object)
    bias = np.asarray(bias, dtype=np.int64).astype(object)
    mult = np.asarray(mult, dtype=np.int64).astype(object)
    shifts = np.asarray(shift, dtype=np.int64) & 63
    x = np.clip(acc + bias, _INT32_MIN, _INT32_MAX)
    p = x * mult
    out = np.empty(p.shape, dtype=object)
    for j, s in enumerate(shifts.tolist()):
        column = p[..., j]
        # Adding half of the divisor before the floor shift rounds half up, exactly.
        out[..., j] = column if s == 0 else (column + (1 << (s - 1))) >> s
    return np.clip(out + int(zp), int(lo), int(hi)).astype(np.int8)


def gemm_int8(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
              mult: np.ndarray | None = None, shift: np.ndarray | None = None, *,
              zp: int = 0, lo: int = -128, hi: int = 127) -> np.ndarray:
    """``A[M, K] @ B[K, N]`` of int8 matrices with int32 (wrapping) accumulation.

    Without ``bias``/``mult``/``shift`` the int32 accumulators are returned (STORE
    mode=int32); with them, the `requantize`-d int8 result (STORE mode=int8).
    """
    acc = wrap_int32(np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64))
    return _output(acc, bias, mult, shift, zp, lo, hi)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of one spatial dimension of a convolution (no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_int8(x: np.ndarray, w: np.ndarray, *, stride: int | tuple[int, int] = 1,
                padding: int | tuple[int, int] = 0, bias: np.ndarray | None = None,
                mult: np.ndarray | None = None, shift: np.ndarray | None = None,
                zp: int = 0, lo: int = -128, hi: int = 127) -> np.ndarray:
    """2-D convolution of NHWC int8 ``x`` ([N, H, W, C] or [H, W, C]) with int8 weights
    ``w`` [KH, KW, C, Cout]; zero padding on every side; output [N, Ho, Wo, Cout] (or
    [Ho, Wo, Cout]). Accumulation and the optional requantization as in `gemm_int8`.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    batched = x.ndim == 4
    if not batched:
        x = x[None]
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    n, h, width, c = x.shape
    kh_size, kw_size, wc, cout = w.shape
    if wc != c:
        raise ValueError(f"weights have {wc} input channels, the input has {c}")
    ho = conv2d_output_size(h, kh_size, sh, ph)
    wo = conv2d_output_size(width, kw_size, sw, pw)
    padded = np.zeros((n, h + 2 * ph, width + 2 * pw, c), dtype=np.int64)
    padded[:, ph:ph + h, pw:pw + width] = x
    acc = np.zeros((n, ho, wo, cout), dtype=np.int64)
    for kh in range(kh_size):
        for kw in range(kw_size):
            window = padded[:, kh:kh + sh * (ho - 1) + 1:sh, kw:kw + sw * (wo - 1) + 1:sw]
            acc += window @ w[kh, kw]
    result = _output(wrap_int32(acc), bias, mult, shift, zp, lo, hi)
    return result if batched else result[0]


def _output(acc, bias, mult, shift, zp, lo, hi) -> np.ndarray:
    given = [v is not None for v in (bias, mult, shift)]
    if not any(given):
        return acc
    if not all(given):
        raise ValueError("bias, mult and shift are given together or not at all")
    return requantize(acc, bias, mult, shift, zp, lo, hi)
