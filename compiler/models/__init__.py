"""Models in the repo for tests and benchmarks (plain torch; torchvision does not work
beside the CPU build): a small CNN for scikit-learn's digits, ResNet-18, MobileNetV2 and a
BERT-style encoder block; `registry` builds them by name.

The names load on first use, so reading the registry's model table
(``from gemmstone.compiler.models.registry import MODELS``) does not import torch; the
command line lists and checks model names before it needs torch.
"""

import importlib

# Public name -> the submodule that defines it.
_EXPORTS = {
    "DigitsCNN": "digits", "load_digits_split": "digits", "train_digits_cnn": "digits",
    "EncoderBlock": "encoder", "randomize_batch_norm": "init",
    "MobileNetV2": "mobilenet", "mobilenet_v2": "mobilenet",
    "ResNet": "resnet", "resnet18": "resnet",
    "MODELS": "registry", "ModelInfo": "registry", "build": "registry",
    "input_shape": "registry", "model_info": "registry",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
