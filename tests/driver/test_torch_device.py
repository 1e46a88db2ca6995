"""The eager PyTorch device ``gem`` (PrivateUse1) on the functional model."""

from __future__ import annotations

import pytest
import torch

from gemmstone.driver import torch as gem


@pytest.fixture(scope="module", autouse=True)
def gem_device():
    yield gem.register("tiny")
    gem.device().close()


@pytest.fixture(autouse=True)
def fresh_report():
    gem.reset_report()


def integer_operand(shape, generator, peak):
    """Integer values in [-127, 127] with ``peak`` somewhere: quantization is exact."""
    values = torch.randint(-127, 128, shape, generator=generator).float()
    values.view(-1)[0] = peak
    return values


def test_tensors_move_print_and_come_back():
    x = torch.randn(3, 4)
    on_gem = x.to("gem")
    assert on_gem.device == torch.device("gem:0") and on_gem.is_gem
    assert torch.equal(on_gem.cpu(), x)
    assert repr(on_gem) == repr(x)[:-1] + ", device='gem:0')"
    empty = torch.empty(2, 5, device="gem")
    assert (empty.device.type, empty.shape) == ("gem", (2, 5))
    assert torch.zeros(3, device="gem").cpu().tolist() == [0.0, 0.0, 0.0]


def test_views_and_in_place_ops_alias_like_on_the_host():
    on_gem = torch.arange(6.0).to("gem")
    view = on_gem.view(2, 3)
    view.add_(10)
    assert on_gem.cpu().tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert gem.report().host["add_"] == 1


def test_matmul_of_integer_valued_operands_is_exact_on_the_accelerator():
    g = torch.Generator().manual_seed(0)
    a, b = integer_operand((13, 21), g, 127), integer_operand((21, 9), g, -127)
    assert torch.equal((a.to("gem") @ b.to("gem")).cpu(), a @ b)
    assert gem.report().accelerator["mm"] == 1 and gem.report().host["mm"] == 0


def test_linear_and_conv2d_run_on_the_accelerator_within_int8_error():
    torch.manual_seed(1)
    linear = torch.nn.Linear(24, 10)
    conv = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
    x, image = torch.randn(5, 24), torch.randn(2, 3, 9, 8)
    with torch.no_grad():
        want_linear, want_conv = linear(x), conv(image)
        got_linear = linear.to("gem")(x.to("gem")).cpu()
        got_conv = conv.to("gem")(image.to("gem")).cpu()
    assert linear.weight.device.type == "gem"
    # Per-tensor int8 operands: errors of about 1% of the output's range.
    for got, want in ((got_linear, want_linear), (got_conv, want_conv)):
        assert got.shape == want.shape
        assert (got - want).abs().max() < 0.02 * want.abs().max()
        assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), 0) > 0.999
    done = gem.report()
    assert done.accelerator["addmm"] == 1 and done.accelerator["convolution"] == 1


def test_conv_of_integer_valued_operands_is_exact():
    g = torch.Generator().manual_seed(2)
    image, weight = integer_operand((1, 2, 6, 5), g, 127), integer_operand((4, 2, 3, 3), g, 127)
    got = torch.nn.functional.conv2d(image.to("gem"), weight.to("gem"), padding=1).cpu()
    assert torch.equal(got, torch.nn.functional.conv2d(image, weight, padding=1))


def test_other_ops_fall_back_to_the_host_and_are_reported():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 4)).to("gem")
    x = torch.randn(2, 8)
    gem.reset_report()
    with torch.no_grad():
        out = torch.softmax(model(x.to("gem")), dim=-1)
    assert out.device.type == "gem"
    assert torch.allclose(out.cpu().sum(-1), torch.ones(2))
    done = gem.report()
    assert done.accelerator == {"addmm": 2}
    assert done.host["relu"] == 1 and done.host["_softmax"] == 1
    text = done.text().splitlines()
    assert text[0].split() == ["op", "accelerator", "host"]
    assert "addmm" in done.text() and text[1:] == sorted(text[1:])


def test_unsupported_forms_run_on_the_host_with_a_reason():
    weight = torch.randn(4, 1, 3, 3)
    image = torch.randn(1, 4, 5, 5)
    got = torch.nn.functional.conv2d(image.to("gem"), weight.to("gem"), groups=4).cpu()
    assert torch.allclose(got, torch.nn.functional.conv2d(image, weight, groups=4))
    done = gem.report()
    assert done.host["convolution"] == 1 and done.accelerator["convolution"] == 0
    assert done.reasons["convolution"] == "transposed, grouped, dilated or not 2-D convolutions"
    ints = torch.arange(6).reshape(2, 3)
    assert torch.equal((ints.to("gem") @ ints.T.to("gem")).cpu(), ints @ ints.T)
    assert gem.report().reasons["mm"] == "operands that are not finite float32 gem tensors"
