"""The demo behind `gemmstone demo`: a GEMM and a convolution, generated for one config,
run on the functional model and checked against numpy.

The shapes are deliberately not multiples of any preset's array, so the kernels' edge
tiles and zero padding are exercised, and the output goes through the full int8 output
stage (bias, per-column requantization, clamp).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import conv2d_output_shape, emit_conv2d
from gemmstone.compiler.kernels.gemm import emit_gemm, pack_qparams
from gemmstone.compiler.reference import conv2d_int8, gemm_int8
from gemmstone.config import AcceleratorConfig
from gemmstone.isa.program import Program
from gemmstone.sim.functional import Counters, run_program

__all__ = ["DemoCase", "run_demo", "save_case", "GEMM_SHAPE", "CONV_SHAPE"]

GEMM_SHAPE = {"m": 100, "k": 70, "n": 50}
CONV_SHAPE = {"batch": 1, "height": 15, "width": 15, "channels": 12, "out_channels": 20,
              "kernel": 3, "stride": 2, "padding": 1}


@dataclass
class DemoCase:
    """One generated program, what running it did, and how it compared with numpy.

    Members
    -------
    name : str
    shapes : str
        The operands, e.g. ``a[100, 70] @ b[70, 50] -> out[100, 50]``.
    program : gemmstone.isa.Program
    inputs : dict[str, numpy.ndarray]
        The arrays given to the program's input buffers.
    expected : numpy.ndarray
        The numpy reference for the program's ``out`` buffer.
    counters : gemmstone.sim.functional.Counters
    useful_macs : int
        Multiply-accumulates the operator needs (the array also does padding work).
    mismatches : int
        Output elements that differ from numpy.
    max_error : int
        Largest absolute difference from numpy.
    """

    name: str
    shapes: str
    program: Program
    inputs: dict[str, np.ndarray]
    expected: np.ndarray
    counters: Counters
    useful_macs: int
    mismatches: int
    max_error: int

    @property
    def passed(self) -> bool:
        return self.mismatches == 0


def _quantization(acc: np.ndarray, rng: np.random.Generator):
    """bias, mult, shift that spread the outputs over the int8 range; the largest
    accumulators saturate, so the clamp is exercised too."""
    cols = acc.shape[-1]
    bias = rng.integers(-500, 500, cols)
    mult = rng.integers(1 << 14, 1 << 15, cols)
    spread = float(np.percentile(np.abs(acc), 98)) + 500
    shift = np.full(cols, max(0, int(np.ceil(np.log2(spread * (1 << 15) / 127)))))
    return bias, mult, shift


def _compare(name: str, shapes: str, program: Program, config: AcceleratorConfig,
             inputs: dict[str, np.ndarray], expected: np.ndarray, useful_macs: int) -> DemoCase:
    result = run_program(program, config, inputs)
    got = result.outputs["out"]
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    return DemoCase(name, shapes, program, inputs, expected, result.counters, useful_macs,
                    int(np.count_nonzero(diff)), int(diff.max()) if diff.size else 0)


def _gemm(config: AcceleratorConfig, rng: np.random.Generator) -> DemoCase:
    m, k, n = GEMM_SHAPE["m"], GEMM_SHAPE["k"], GEMM_SHAPE["n"]
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias, mult, shift = _quantization(gemm_int8(a, b), rng)
    builder = ProgramBuilder(config)
    a_buf = builder.buffer("a", (m, k))
    b_buf = builder.buffer("b", (k, n), data=b)
    q_buf = builder.buffer("qparams", 3 * n, "int32",
                           data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (m, n))
    emit_gemm(builder, a_buf, b_buf, out, q_buf)
    program = builder.finish(notes={"demo": "gemm", **GEMM_SHAPE})
    expected = gemm_int8(a, b, bias, mult, shift)
    return _compare("gemm", f"a[{m}, {k}] @ b[{k}, {n}] -> out[{m}, {n}] int8", program,
                    config, {"a": a}, expected, m * k * n)


def _conv(config: AcceleratorConfig, rng: np.random.Generator) -> DemoCase:
    s = CONV_SHAPE
    batch, height, width, c, cout = (s["batch"], s["height"], s["width"], s["channels"],
                                     s["out_channels"])
    kernel, stride, padding = s["kernel"], s["stride"], s["padding"]
    ho, wo = conv2d_output_shape(height, width, kernel, stride, padding)
    x = rng.integers(-128, 128, (batch, height, width, c), dtype=np.int8)
    w = rng.integers(-128, 128, (kernel, kernel, c, cout), dtype=np.int8)
    conv = {"stride": stride, "padding": padding}
    bias, mult, shift = _quantization(conv2d_int8(x, w, **conv), rng)
    builder = ProgramBuilder(config)
    x_buf = builder.buffer("x", x.shape)
    w_buf = builder.buffer("w", (kernel * kernel * c, cout),
                           data=w.reshape(kernel * kernel * c, cout))
    q_buf = builder.buffer("qparams", 3 * cout, "int32",
                           data=pack_qparams(bias, mult, shift, config.cols))
    out = builder.buffer("out", (batch, ho, wo, cout))
    emit_conv2d(builder, x_buf, w_buf, out, q_buf, kernel_size=kernel, **conv)
    program = builder.finish(notes={"demo": "conv2d", **s})
    expected = conv2d_int8(x, w, bias=bias, mult=mult, shift=shift, **conv)
    shapes = (f"x[{batch}, {height}, {width}, {c}] * w[{kernel}, {kernel}, {c}, {cout}] "
              f"stride {stride} pad {padding} -> out[{batch}, {ho}, {wo}, {cout}] int8")
    return _compare("conv2d", shapes, program, config, {"x": x}, expected,
                    batch * ho * wo * cout * kernel * kernel * c)


def run_demo(config: AcceleratorConfig, *, seed: int = 0) -> list[DemoCase]:
    """Build, run and check the GEMM and the convolution for ``config``."""
    rng = np.random.default_rng(seed)
    return [_gemm(config, rng), _conv(config, rng)]


def save_case(case: DemoCase, folder: Path) -> list[Path]:
    """Write the case's program and inputs, ready for `gemmstone run`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{case.name}.gem"]
    case.program.save(paths[0])
    for name, array in case.inputs.items():
        paths.append(folder / f"{case.name}.{name}.npy")
        np.save(paths[-1], array)
    return paths
