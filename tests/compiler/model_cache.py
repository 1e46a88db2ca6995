"""Models trained or exported once per test session, shared by the test modules."""

import functools

import torch

from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models import mobilenet_v2, randomize_batch_norm, resnet18, train_digits_cnn


@functools.cache
def digits():
    """``(model, (x_train, y_train, x_test, y_test), float_accuracy)``."""
    return train_digits_cnn()


@functools.cache
def exported(name: str):
    """``(model, example input, frontend graph)`` of "resnet18" (10 classes) or
    "mobilenet_v2" (10 classes, width 0.35), random init with random batch-norm
    statistics, on a 1x3x32x32 input. Callers copy the graph before changing it."""
    torch.manual_seed(0)
    model = {"resnet18": lambda: resnet18(num_classes=10),
             "mobilenet_v2": lambda: mobilenet_v2(num_classes=10, width_mult=0.35)}[name]()
    model = randomize_batch_norm(model).eval()
    x = torch.randn(1, 3, 32, 32)
    return model, x, from_torch(model, (x,))
