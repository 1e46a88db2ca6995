"""Models trained or exported once per test session, shared by the test modules; built by
the model registry (`gemmstone.compiler.models.registry`), like the benchmarks'."""

import functools

import torch

from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models import load_digits_split
from gemmstone.compiler.models.registry import build

# Test name -> (registry name, build options): small models, so the tests run fast.
_EXPORTED = {"resnet18": ("resnet18", {}),
             "mobilenet_v2": ("mobilenetv2", {"width_mult": 0.35})}


@functools.cache
def digits():
    """``(model, (x_train, y_train, x_test, y_test), float_accuracy)``: the registry's
    trained digits CNN (seed 0), its data split and its accuracy on the test split."""
    model, _ = build("digits", trained=True, seed=0)
    split = load_digits_split(seed=0)
    with torch.no_grad():
        predicted = model(torch.from_numpy(split[2])).argmax(1).numpy()
    return model, split, float((predicted == split[3]).mean())


@functools.cache
def exported(name: str):
    """``(model, example input, frontend graph)`` of "resnet18" (10 classes) or
    "mobilenet_v2" (10 classes, width 0.35), seed-0 random weights and batch-norm
    statistics, on a seeded random 1x3x32x32 input. Callers copy the graph before
    changing it."""
    registry_name, options = _EXPORTED[name]
    model, shape = build(registry_name, size=32, num_classes=10, seed=0, **options)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return model, x, from_torch(model, (x,))
