"""torch.export and torch.compile frontends: the kept-whole operators, the in-repo models
(IR output == PyTorch before and after the pass pipeline), and the error messages."""

import model_cache
import numpy as np
import pytest
import torch
from torch import nn

from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.frontends.torch_fx import (
    from_exported_program,
    from_fx,
    from_pt2,
    from_torch,
    runtime_input_positions,
)
from gemmstone.compiler.interpreter import run
from gemmstone.compiler.models import (
    EncoderBlock,
    randomize_batch_norm,
)
from gemmstone.compiler.ops import Op
from gemmstone.compiler.passes import optimize
from gemmstone.compiler.verify import verify

# torch.export's own pytree code trips this deprecation inside torch 2.13.
pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


class Everything(nn.Module):
    """One of each operator the export decomposition table must keep whole."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(nn.functional.relu6(self.bn(self.conv(x))), 2)
        y = torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        y = torch.nn.functional.gelu(self.norm(self.fc(y)))
        return torch.softmax(y, -1), y.transpose(0, 1) @ y


def compare(model, *args, tol=1e-4, passes=True, graph=None):
    """IR output == model output, straight from the frontend and after the pipeline."""
    graph = from_torch(model, args) if graph is None else graph.copy()
    with torch.no_grad():
        expected = model(*args)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    graphs = [graph] + ([graph.copy()] if passes else [])
    if passes:
        optimize(graphs[1])
    for g in graphs:
        for got, want in zip(run(g, *[a.numpy() for a in args]), expected, strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol)
    return graphs


def test_kept_operators_arrive_whole():
    torch.manual_seed(0)
    graph, _ = compare(randomize_batch_norm(Everything()), torch.randn(2, 3, 8, 8))
    counts = {op: graph.count(op) for op in Op}
    assert counts[Op.CONV2D] == 1 and counts[Op.BATCH_NORM] == 1 and counts[Op.RELU6] == 1
    assert counts[Op.MAX_POOL2D] == 1 and counts[Op.ADAPTIVE_AVG_POOL2D] == 1
    assert counts[Op.MATMUL] == 2 and counts[Op.LAYER_NORM] == 1 and counts[Op.GELU] == 1
    assert counts[Op.SOFTMAX] == 1
    assert "= matmul(%view, %fc_weight, %fc_bias) {transpose_b=True} : f32[2,6]" in str(graph)


def test_digits_cnn_predictions_through_the_ir():
    model, (_, _, x_test, y_test), accuracy = model_cache.digits()
    assert accuracy > 0.95
    compare(model, torch.from_numpy(x_test[:64]))
    full = from_torch(model, (torch.from_numpy(x_test),))
    optimize(full)
    predicted = run(full, x_test)[0].argmax(1)
    assert (predicted == y_test).mean() == pytest.approx(accuracy)
    assert full.count(Op.FUSED_CONV2D) == 2 and full.count(Op.BATCH_NORM) == 0
    # One input channel: NCHW -> NHWC is a reshape; the flatten permutes fc1's weights.
    assert full.count(Op.TRANSPOSE) == 0


def test_resnet18_matches_torch():
    model, x, exported = model_cache.exported("resnet18")
    graph, optimized = compare(model, x, graph=exported)
    assert graph.count(Op.CONV2D) == 20 and graph.count(Op.BATCH_NORM) == 20
    # Every conv+bn(+relu)(+residual) is one accelerator op; the only layout change left
    # is the input's.
    assert optimized.count(Op.FUSED_CONV2D) == 20 and optimized.count(Op.FUSED_MATMUL) == 1
    residual = [n for n in optimized.nodes if n.op is Op.FUSED_CONV2D and n.attrs["residual"]]
    assert len(residual) == 8 and optimized.count(Op.TRANSPOSE) == 1
    assert optimized.count(Op.ADD) == optimized.count(Op.RELU) == 0


def test_mobilenet_v2_matches_torch():
    model, x, exported = model_cache.exported("mobilenet_v2")
    _, optimized = compare(model, x, graph=exported)
    depthwise = [n for n in optimized.nodes if n.op is Op.FUSED_CONV2D and n.attrs["groups"] > 1]
    assert len(depthwise) == 17 and optimized.count(Op.FUSED_CONV2D) == 52
    assert all(n.attrs["clamp"] == (0.0, 6.0) for n in depthwise)
    assert optimized.count(Op.TRANSPOSE) == 1


def test_encoder_block_matches_torch():
    torch.manual_seed(0)
    _, optimized = compare(EncoderBlock(64, 4).eval(), torch.randn(2, 8, 64))
    assert optimized.count(Op.FUSED_MATMUL) == 8 and optimized.count(Op.LAYER_NORM) == 2
    assert optimized.count(Op.GELU) == 1 and optimized.count(Op.SOFTMAX) == 1
    # q @ k^T reads k transposed: no transpose node feeds the scores matmul.
    scores = [n for n in optimized.nodes if n.op is Op.FUSED_MATMUL and n.inputs[1].op is not
              Op.CONSTANT and n.attrs["transpose_b"]]
    assert len(scores) == 1


def test_torch_compile_backend_shares_the_export_path():
    torch.manual_seed(0)
    model = randomize_batch_norm(Everything()).eval()
    seen = {}

    def backend(graph_module, example_inputs):
        graph = from_fx(graph_module, example_inputs)
        verify(graph)
        optimize(graph)
        positions = runtime_input_positions(graph_module, example_inputs)
        seen["graph"], seen["positions"] = graph, positions

        def call(*args):
            arrays = [args[i].detach().numpy() for i in positions]
            return tuple(torch.from_numpy(out) for out in run(graph, *arrays))
        return call

    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        got, want = compiled(x), model(x)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-4)
    graph = seen["graph"]
    assert [n.name for n in graph.inputs] == ["x"] and len(seen["positions"]) == 1
    assert graph.count(Op.FUSED_CONV2D) == 1 and graph.count(Op.BATCH_NORM) == 0


def test_unsupported_operator_is_named():
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x).values

    with pytest.raises(FrontendError, match=r"^torch node 'sort' \(aten.sort.default\): "
                                            r"unsupported operator$"):
        from_torch(Sorts(), (torch.randn(4),))


def test_unsupported_variants_and_training_mode_are_reported():
    class Transposed(nn.Module):
        def forward(self, x):
            return torch.nn.functional.conv_transpose2d(x, torch.ones(3, 2, 2, 2))

    with pytest.raises(FrontendError, match=r"^torch node 'convolution' "
                                            r"\(aten.convolution.default\): transposed "
                                            r"convolution is not supported$"):
        from_torch(Transposed(), (torch.randn(1, 3, 4, 4),))

    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    exported = torch.export.export(model.train(), (torch.randn(2, 1, 2, 2),))
    with pytest.raises(FrontendError, match=r"training-mode batch norm \(call model.eval\(\) "
                                            r"before exporting\)|mutates buffer"):
        from_exported_program(exported)


def test_saved_pt2_program(tmp_path):
    torch.manual_seed(0)
    model = EncoderBlock(32, 2).eval()
    x = torch.randn(1, 4, 32)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "block.pt2")
    graph = from_pt2(tmp_path / "block.pt2")
    assert graph.name == "block"
    with torch.no_grad():
        np.testing.assert_allclose(run(graph, x.numpy())[0], model(x).numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_dynamic_shapes_are_rejected():
    model = nn.Linear(3, 2)
    exported = torch.export.export(model, (torch.randn(4, 3),),
                                   dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    with pytest.raises(FrontendError, match=r"^torch node 'input' \(placeholder\): dynamic "
                                            r"shape \[s\d+, 3\] is not supported"):
        from_exported_program(exported)
