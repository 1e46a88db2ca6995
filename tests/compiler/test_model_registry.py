"""The model registry: repo models by name, with seeded weights and their input shapes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gemmstone.compiler.models import load_digits_split, mobilenet_v2, resnet18
from gemmstone.compiler.models.registry import MODELS, build, input_shape, model_info


def test_names_sizes_and_input_shapes():
    assert list(MODELS) == ["digits", "resnet18", "mobilenetv2", "encoder"]
    assert {n: i.default_size for n, i in MODELS.items()} == {
        "digits": 8, "resnet18": 224, "mobilenetv2": 224, "encoder": 128}
    assert input_shape("digits") == (1, 1, 8, 8)
    assert input_shape("resnet18", size=32, batch=3) == (3, 3, 32, 32)
    assert input_shape("mobilenetv2") == (1, 3, 224, 224)
    assert input_shape("encoder", size=16, batch=2) == (2, 16, 768)


def test_random_weights_follow_the_seed_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, shape = build("resnet18", size=32, batch=2, num_classes=10, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    again, _ = build("resnet18", size=32, batch=2, num_classes=10, seed=1)
    other, _ = build("resnet18", size=32, batch=2, num_classes=10, seed=2)
    assert shape == (2, 3, 32, 32) and not first.training
    same = first.state_dict()
    assert all(torch.equal(same[k], v) for k, v in again.state_dict().items())
    assert not torch.equal(same["conv1.weight"], other.state_dict()["conv1.weight"])
    # Batch norms get random statistics (fresh ones are the identity).
    assert not torch.equal(first.bn1.running_mean, torch.zeros(64))
    # The weights of a plain seeded build, then randomized batch norm.
    torch.manual_seed(1)
    plain = resnet18(num_classes=10)
    assert torch.equal(plain.conv1.weight, first.conv1.weight)
    assert first(torch.randn(shape)).shape == (2, 10)


def test_default_classes_and_encoder_input():
    module, shape = build("mobilenetv2", size=32)
    assert module(torch.randn(shape)).shape == (1, 1000)
    encoder, shape = build("encoder", size=16, batch=2)
    x = torch.randn(shape)
    assert shape == (2, 16, 768) and encoder(x).shape == x.shape


def test_width_multiplier_narrows_mobilenetv2():
    narrow, shape = build("mobilenetv2", size=32, num_classes=10, width_mult=0.35, seed=3)
    full, _ = build("mobilenetv2", size=32, num_classes=10, seed=3)
    torch.manual_seed(3)
    plain = mobilenet_v2(num_classes=10, width_mult=0.35)
    first = next(narrow.parameters())
    assert torch.equal(next(plain.parameters()), first)
    assert first.shape[0] < next(full.parameters()).shape[0]
    assert sum(p.numel() for p in narrow.parameters()) < sum(
        p.numel() for p in full.parameters()) / 3
    assert narrow(torch.randn(shape)).shape == (1, 10)


def test_trained_digits_classify_held_out_images_and_are_copies():
    first, shape = build("digits", batch=5, trained=True)
    second, _ = build("digits", batch=5, trained=True)
    assert shape == (5, 1, 8, 8) and first is not second
    _, _, x_test, y_test = load_digits_split(seed=0)
    with torch.no_grad():
        predicted = first(torch.from_numpy(x_test)).argmax(1).numpy()
    assert (predicted == y_test).mean() > 0.95
    with torch.no_grad():
        first.fc2.bias.add_(1.0)
    assert not torch.equal(first.fc2.bias, second.fc2.bias)
    untrained, _ = build("digits")
    with torch.no_grad():
        guessed = untrained(torch.from_numpy(x_test)).argmax(1).numpy()
    assert (guessed == y_test).mean() < 0.5


@pytest.mark.parametrize(("call", "message"), [
    (lambda: build("vgg"), "unknown model 'vgg'; known models: digits, resnet18, mobilenetv2, "
                           "encoder"),
    (lambda: model_info(None), "unknown model None; known models: digits, resnet18, "
                               "mobilenetv2, encoder"),
    (lambda: build("digits", size=16), "digits: the image size is fixed at 8, not 16"),
    (lambda: build("resnet18", size=0), "resnet18: 'size' must be a positive integer, not 0"),
    (lambda: input_shape("encoder", batch=1.5), "encoder: 'batch' must be a positive integer, "
                                                "not 1.5"),
    (lambda: build("digits", num_classes=3), "digits: 'num_classes' is fixed at 10, not 3"),
    (lambda: build("encoder", num_classes=3), "encoder: 'num_classes' does not apply (it has "
                                              "no classifier)"),
    (lambda: build("resnet18", num_classes=0), "resnet18: 'num_classes' must be a positive "
                                               "integer, not 0"),
    (lambda: build("resnet18", trained=True), "resnet18: no trained weights (trainable: "
                                              "digits)"),
    (lambda: build("resnet18", width_mult=0.5), "resnet18: 'width_mult' does not apply "
                                                "(scalable: mobilenetv2)"),
    (lambda: build("mobilenetv2", width_mult=0), "mobilenetv2: 'width_mult' must be a "
                                                 "positive number, not 0"),
    (lambda: build("mobilenetv2", width_mult="1"), "mobilenetv2: 'width_mult' must be a "
                                                   "positive number, not '1'"),
])
def test_bad_names_and_options_are_named(call, message):
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message


def test_reading_the_table_does_not_import_torch():
    code = ("import sys; from gemmstone.compiler.models.registry import MODELS, input_shape; "
            "input_shape('resnet18'); print(sorted(MODELS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['digits', 'encoder', 'mobilenetv2', 'resnet18'] False"
    assert np.prod(input_shape("resnet18")) == 3 * 224 * 224
