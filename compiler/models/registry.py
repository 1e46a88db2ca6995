"""The repo's models by name: the one place that builds them for `gemmstone run`,
`gemmstone sweep` (``model:NAME``), tests and benchmarks.

A name gives a module in eval mode with seeded weights and the shape of its input::

    module, shape = build("resnet18", size=32, batch=2, num_classes=10, seed=0)
    module(torch.randn(shape))          # shape == (2, 3, 32, 32)
    small, _ = build("mobilenetv2", size=32, num_classes=10, width_mult=0.35)

Random weights come from ``seed`` (PyTorch's default initialization, then random
batch-norm statistics, see `randomize_batch_norm`) without touching the caller's global
torch random state. ``digits`` can also be trained (``trained=True``: seconds, on
scikit-learn's bundled digits; `load_digits_split` with the same seed gives its data).
Reading `MODELS` does not import torch; `build` does.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelInfo", "MODELS", "model_info", "input_shape", "build"]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Members
    -------
    name : str
    description : str
        One line for help texts.
    default_size : int
        Image height and width, or sequence length (``size_meaning``).
    size_meaning : str
        ``"image size"`` or ``"sequence length"``.
    fixed_size : bool
        True if ``size`` cannot change (digits: 8x8 images).
    default_classes : int or None
        Outputs of the classifier head; None if the model has none (encoder).
    fixed_classes : bool
        True if ``num_classes`` cannot change.
    trainable : bool
        True if ``build(..., trained=True)`` gives trained weights.
    scalable : bool
        True if ``build(..., width_mult=...)`` scales its channels (MobileNetV2's width
        multiplier).
    """

    name: str
    description: str
    default_size: int
    size_meaning: str
    fixed_size: bool
    default_classes: int | None
    fixed_classes: bool
    trainable: bool
    scalable: bool
    _make: Callable[..., nn.Module]
    _sample_shape: Callable[[int], tuple[int, ...]]


def _digits(classes: int | None) -> nn.Module:
    from gemmstone.compiler.models.digits import DigitsCNN

    return DigitsCNN()


def _resnet18(classes: int | None) -> nn.Module:
    from gemmstone.compiler.models.resnet import resnet18

    return resnet18(num_classes=classes)


def _mobilenetv2(classes: int | None, width_mult: float = 1.0) -> nn.Module:
    from gemmstone.compiler.models.mobilenet import mobilenet_v2

    return mobilenet_v2(num_classes=classes, width_mult=width_mult)


def _encoder(classes: int | None) -> nn.Module:
    from gemmstone.compiler.models.encoder import EncoderBlock

    return EncoderBlock(768, 12)


#: Model name -> `ModelInfo`, in the order help texts list them.
MODELS: dict[str, ModelInfo] = {info.name: info for info in (
    ModelInfo("digits", "DigitsCNN on scikit-learn's 8x8 digits (trainable in seconds)",
              8, "image size", True, 10, True, True, False, _digits,
              lambda size: (1, size, size)),
    ModelInfo("resnet18", "ResNet-18, random weights", 224, "image size", False, 1000, False,
              False, False, _resnet18, lambda size: (3, size, size)),
    ModelInfo("mobilenetv2", "MobileNetV2, random weights", 224, "image size", False, 1000,
              False, False, True, _mobilenetv2, lambda size: (3, size, size)),
    ModelInfo("encoder", "BERT-base encoder block (hidden 768, 12 heads), random weights",
              128, "sequence length", False, None, True, False, False, _encoder,
              lambda size: (size, 768)),
)}


def model_info(name: str) -> ModelInfo:
    """The `ModelInfo` of ``name``.

    Raises
    ------
    ValueError
        ``name`` is no repo model; the message lists the known ones.
    """
    info = MODELS.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return info


def input_shape(name: str, *, size: int | None = None, batch: int = 1) -> tuple[int, ...]:
    """The shape of ``name``'s input at ``size`` (default: the model's) and ``batch``.

    Raises
    ------
    ValueError
        Unknown model, a ``size`` or ``batch`` that is not a positive integer, or a size
        other than 8 for digits.
    """
    info = model_info(name)
    for what, value in (("size", size), ("batch", batch)):
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"{name}: '{what}' must be a positive integer, not {value!r}")
    if size is None:
        size = info.default_size
    elif info.fixed_size and size != info.default_size:
        raise ValueError(f"{name}: the {info.size_meaning} is fixed at {info.default_size}, "
                         f"not {size}")
    return (batch, *info._sample_shape(size))


def build(name: str, *, size: int | None = None, batch: int = 1, num_classes: int | None = None,
          seed: int = 0, trained: bool = False,
          width_mult: float | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """Build repo model ``name`` in eval mode and the shape of one input batch.

    Parameters
    ----------
    name : str
        A key of `MODELS`.
    size : int, optional
        Image size or sequence length (`ModelInfo.size_meaning`; default: the model's).
    batch : int
        Leading dimension of the input shape.
    num_classes : int, optional
        Classifier outputs (default: the model's; fixed for digits, none for encoder).
    seed : int
        Seed of the random weights (or of the training for ``trained``).
    trained : bool
        Train the model (digits only; cached per process and seed, each call gets its
        own copy).
    width_mult : float, optional
        Channel width multiplier (`ModelInfo.scalable` models only; default 1.0): tests
        use a narrow MobileNetV2 to run fast.

    Returns
    -------
    module : torch.nn.Module
        In eval mode.
    shape : tuple of int
        ``(batch, ...)``, the shape of the input the module takes.

    Raises
    ------
    ValueError
        Unknown model, or an option the model does not take; the message names both.
    """
    info = model_info(name)
    shape = input_shape(name, size=size, batch=batch)
    if num_classes is not None:
        if info.default_classes is None:
            raise ValueError(f"{name}: 'num_classes' does not apply (it has no classifier)")
        if type(num_classes) is not int or num_classes < 1:
            raise ValueError(f"{name}: 'num_classes' must be a positive integer, "
                             f"not {num_classes!r}")
        if info.fixed_classes and num_classes != info.default_classes:
            raise ValueError(f"{name}: 'num_classes' is fixed at {info.default_classes}, "
                             f"not {num_classes}")
    options = {}
    if width_mult is not None:
        if not info.scalable:
            raise ValueError(f"{name}: 'width_mult' does not apply (scalable: "
                             f"{', '.join(n for n, i in MODELS.items() if i.scalable)})")
        if type(width_mult) not in (int, float) or not width_mult > 0:
            raise ValueError(f"{name}: 'width_mult' must be a positive number, "
                             f"not {width_mult!r}")
        options["width_mult"] = float(width_mult)
    if trained:
        if not info.trainable:
            raise ValueError(f"{name}: no trained weights (trainable: "
                             f"{', '.join(n for n, i in MODELS.items() if i.trainable)})")
        return copy.deepcopy(_trained_digits(seed)), shape
    import torch

    from gemmstone.compiler.models.init import randomize_batch_norm

    # Fork the random state so the caller's global torch RNG is not changed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = info._make(num_classes or info.default_classes, **options)
    return randomize_batch_norm(module, seed=seed).eval(), shape


@functools.cache
def _trained_digits(seed: int) -> nn.Module:
    """The trained digits CNN (deterministic per seed, so trained once per process)."""
    import torch

    from gemmstone.compiler.models.digits import train_digits_cnn

    with torch.random.fork_rng(devices=[]):
        module, _, _ = train_digits_cnn(seed=seed)
    return module
