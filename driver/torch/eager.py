"""The eager PyTorch device ``gem``: tensors on the accelerator, one-op programs for matmul,
linear and conv2d, every other op on the host (counted).

How it plugs into PyTorch (pinned: torch 2.13.0, see pyproject): `register` renames the
PrivateUse1 backend to ``gem`` and sets it up as a Python backend
(``torch.utils.backend_registration._setup_privateuseone_for_python_backend``, an
experimental API: it calls ``rename_privateuse1_backend``,
``generate_methods_for_privateuse1_backend`` and registers the device module, hooks and
device guard). A tensor on ``gem`` is a `GemTensor`: a wrapper subclass
(``torch.Tensor._make_wrapper_subclass`` with device ``gem``, so ``x.device.type ==
"gem"``) holding its values in a host tensor. Every aten op on such tensors arrives in
`GemTensor.__torch_dispatch__` after autograd and after PyTorch's composite decompositions
(``linear`` arrives as ``t`` + ``addmm``, ``matmul`` as ``mm``).

Why a wrapper subclass and not kernels registered with ``torch.library`` for the
PrivateUse1 key: a PrivateUse1 tensor made in Python (``torch._C._acc.create_empty_tensor``)
loses its Python attributes when PyTorch's structured kernels hold it only from C++ (e.g.
the ``out=`` tensor of ``add``), and its ``detach`` returns a plain Tensor, which
``nn.Parameter`` rejects; wrapper subclasses keep their Python object alive.

Accelerated ops (``aten.mm``, ``aten.addmm``, ``aten.convolution`` for 2-D, ungrouped,
undilated, not transposed convolutions) run on the accelerator as one-op programs built
with the compiler's kernels (`emit_gemm`, `emit_conv2d`) and cached per shape. Accuracy:
both operands are quantized on the fly to int8 with one symmetric scale per tensor
(``scale = max|x| / 127``, round to nearest); the accelerator accumulates exactly in int32
(STORE int32, no requantization); the host multiplies by the two scales and adds the bias in
float32. So each output carries the error of 8-bit operands (about 0.4% of the largest
operand per factor); integer-valued operands within [-127, 127] whose largest magnitude is
127 are exact. Inputs that are not float32, or contain inf/NaN, go to the host instead.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._pytree import tree_map

from gemmstone.compiler.builder import ProgramBuilder
from gemmstone.compiler.kernels.conv import emit_conv2d
from gemmstone.compiler.kernels.gemm import emit_gemm
from gemmstone.config import AcceleratorConfig
from gemmstone.driver.device import Device
from gemmstone.isa.program import Program

__all__ = ["DEVICE_NAME", "GemTensor", "OpReport", "register", "device", "report",
           "reset_report"]

DEVICE_NAME = "gem"
_aten = torch.ops.aten


@dataclass
class OpReport:
    """Which aten ops ran where since the last `reset_report`.

    Members
    -------
    accelerator : collections.Counter
        Op name -> calls run on the accelerator.
    host : collections.Counter
        Op name -> calls run on the host (fallbacks).
    reasons : dict
        Op name -> why an op that has an accelerator kernel ran on the host.
    """

    accelerator: collections.Counter = field(default_factory=collections.Counter)
    host: collections.Counter = field(default_factory=collections.Counter)
    reasons: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """A table: op, calls on the accelerator, calls on the host."""
        names = sorted(set(self.accelerator) | set(self.host))
        width = max([len(n) for n in names] + [2])
        lines = [f"{'op':<{width}}  accelerator  host"]
        lines += [f"{n:<{width}}  {self.accelerator[n]:>11}  {self.host[n]:>4}"
                  + (f"  ({self.reasons[n]})" if n in self.reasons else "") for n in names]
        return "\n".join(lines)


class _State:
    device: Device | None = None
    registered = False
    library: torch.library.Library | None = None
    report = OpReport()


def register(config: AcceleratorConfig | str = "tiny", backend: str = "func",
             **options) -> Device:
    """Make ``gem`` a PyTorch device backed by a `Device` for ``config`` on ``backend``.

    The PyTorch side is set up once per process (PyTorch allows renaming PrivateUse1 only
    once); calling again replaces the device (the old one is closed). Returns the device.
    """
    if not _State.registered:
        from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

        _setup_privateuseone_for_python_backend(DEVICE_NAME)
        # Ops without a gem tensor argument (factories: empty, zeros, arange with
        # device="gem") dispatch on the PrivateUse1 key itself, not through a GemTensor.
        _State.library = torch.library.Library("_", "IMPL")
        _State.library.fallback(_factory, "PrivateUse1")
        _State.registered = True
    if _State.device is not None:
        _State.device.close()
    _State.device = Device(config, backend, **options)
    _gemm_program.cache_clear()
    _conv_program.cache_clear()
    return _State.device


def device() -> Device:
    """The `Device` behind ``gem`` (`register` first)."""
    if _State.device is None or _State.device.closed:
        raise RuntimeError("the gem device is not registered: call "
                           "gemmstone.driver.torch.register() first")
    return _State.device


def report() -> OpReport:
    """Which ops ran where since the last `reset_report`."""
    return _State.report


def reset_report() -> None:
    _State.report = OpReport()


class GemTensor(torch.Tensor):
    """A tensor on the ``gem`` device; its values are kept in the host tensor ``raw``."""

    raw: torch.Tensor

    @staticmethod
    def __new__(cls, raw: torch.Tensor) -> GemTensor:
        return torch.Tensor._make_wrapper_subclass(
            cls, raw.shape, strides=raw.stride(), storage_offset=raw.storage_offset(),
            dtype=raw.dtype, device=f"{DEVICE_NAME}:0", requires_grad=raw.requires_grad)

    def __init__(self, raw: torch.Tensor) -> None:
        self.raw = raw

    def __repr__(self, *, tensor_contents=None) -> str:
        return f"{repr(self.raw)[:-1]}, device='{DEVICE_NAME}:0')"

    # Results of torch functions are not converted to the subclass: ops decide.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kernel = _KERNELS.get(func)
        if kernel is not None:
            why = kernel(*args, **kwargs)
            if not isinstance(why, str):
                _State.report.accelerator[_name(func)] += 1
                return why
            _State.report.reasons[_name(func)] = why
        _State.report.host[_name(func)] += 1
        return _on_host(func, args, kwargs)


def _factory(func, *args, **kwargs):
    _State.report.host[_name(func)] += 1
    return _on_host(func, args, kwargs)


def _name(func) -> str:
    return str(func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else func)


def _on_host(func, args, kwargs):
    """Run ``func`` on the host tensors; tensor results become gem tensors, except results
    that are arguments (in-place and ``out=`` ops) and copies to another device."""
    given: dict[int, object] = {}

    def unwrap(value):
        if isinstance(value, torch.Tensor):
            raw = value.raw if isinstance(value, GemTensor) else value
            given[id(raw)] = value
            return raw
        return value

    args, kwargs = tree_map(unwrap, (args, kwargs))
    target = kwargs.get("device")
    to_host = target is not None and torch.device(target).type != DEVICE_NAME
    if target is not None:
        kwargs["device"] = torch.device("cpu")
    result = func(*args, **kwargs)

    def wrap(value):
        if not isinstance(value, torch.Tensor):
            return value
        if id(value) in given:
            return given[id(value)]
        return value if to_host else GemTensor(value)

    return tree_map(wrap, result)


# -- accelerated ops -----------------------------------------------------------------------


def _quantize(values: torch.Tensor) -> tuple[np.ndarray, float]:
    """int8 values and the per-tensor scale with ``values ~ q * scale``."""
    array = values.detach().numpy()
    peak = float(np.abs(array).max()) if array.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    return np.clip(np.rint(array / scale), -127, 127).astype(np.int8), scale


def _host_tensor(value) -> torch.Tensor | None:
    """The float32 host tensor behind a gem tensor argument, or None when the op must run
    on the host (another dtype, non-finite values)."""
    if not isinstance(value, GemTensor) or value.dtype != torch.float32:
        return None
    raw = value.raw
    if not bool(torch.isfinite(raw).all()):
        return None
    return raw


@functools.lru_cache(maxsize=64)
def _gemm_program(config: AcceleratorConfig, m: int, k: int, n: int) -> Program:
    builder = ProgramBuilder(config)
    a = builder.buffer("a", (m, k))
    b = builder.buffer("b", (k, n))
    out = builder.buffer("out", (m, n), "int32")
    emit_gemm(builder, a, b, out)
    return builder.finish()


@functools.lru_cache(maxsize=64)
def _conv_program(config: AcceleratorConfig, x_shape: tuple, kernel: tuple, cout: int,
                  stride: tuple, padding: tuple) -> Program:
    batch, height, width, channels = x_shape
    kh, kw = kernel
    ho = (height + 2 * padding[0] - kh) // stride[0] + 1
    wo = (width + 2 * padding[1] - kw) // stride[1] + 1
    builder = ProgramBuilder(config)
    x = builder.buffer("x", x_shape)
    w = builder.buffer("w", (kh * kw * channels, cout))
    out = builder.buffer("out", (batch, ho, wo, cout), "int32")
    emit_conv2d(builder, x, w, out, kernel_size=kernel, stride=stride, padding=padding)
    return builder.finish()


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | str:
    """float32 [M, K] @ [K, N] on the accelerator, dequantized."""
    qa, sa = _quantize(a)
    qb, sb = _quantize(b)
    dev = device()
    program = _gemm_program(dev.config, a.shape[0], a.shape[1], b.shape[1])
    acc = dev.execute(program, {"a": qa, "b": qb})["out"]
    return torch.from_numpy(acc.astype(np.float32) * np.float32(sa * sb))


def _mm(a, b) -> GemTensor | str:
    ha, hb = _host_tensor(a), _host_tensor(b)
    if ha is None or hb is None:
        return "operands that are not finite float32 gem tensors"
    return GemTensor(_matmul(ha, hb))


def _addmm(bias, a, b, *, beta=1, alpha=1) -> GemTensor | str:
    ha, hb, hbias = _host_tensor(a), _host_tensor(b), _host_tensor(bias)
    if ha is None or hb is None or hbias is None:
        return "operands that are not finite float32 gem tensors"
    return GemTensor(beta * hbias + alpha * _matmul(ha, hb))


def _convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding,
                 groups) -> GemTensor | str:
    hx, hw = _host_tensor(x), _host_tensor(weight)
    hbias = None if bias is None else _host_tensor(bias)
    if hx is None or hw is None or (bias is not None and hbias is None):
        return "operands that are not finite float32 gem tensors"
    if transposed or groups != 1 or hx.dim() != 4 or any(d != 1 for d in dilation):
        return "transposed, grouped, dilated or not 2-D convolutions"
    cout, cin, kh, kw = hw.shape
    qx, sx = _quantize(hx.permute(0, 2, 3, 1).contiguous())  # NCHW -> NHWC
    qw, sw = _quantize(hw.permute(2, 3, 1, 0).reshape(kh * kw * cin, cout).contiguous())
    dev = device()
    program = _conv_program(dev.config, tuple(qx.shape), (kh, kw), cout, tuple(stride),
                            tuple(padding))
    acc = dev.execute(program, {"x": qx, "w": qw})["out"]
    out = torch.from_numpy(acc.astype(np.float32) * np.float32(sx * sw)).permute(0, 3, 1, 2)
    if hbias is not None:
        out = out + hbias.reshape(1, -1, 1, 1)
    return GemTensor(out.contiguous())


_KERNELS = {
    _aten.mm.default: _mm,
    _aten.addmm.default: _addmm,
    _aten.convolution.default: _convolution,
}
