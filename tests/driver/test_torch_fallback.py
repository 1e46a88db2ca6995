"""``torch.compile(backend="gemmstone")`` with operators the compiler cannot take: the
graph still runs, the matmuls and convolutions on the device, the rest on the host with
PyTorch (exactly PyTorch's results on the device's outputs), counted in the fallback
report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gemmstone.driver.torch as gem
from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.models.registry import build
from gemmstone.driver.torch import fallback

pytestmark = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`")


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def new_models(before: list) -> list:
    """The `compiled_models` loaded since ``before`` was taken."""
    return [m for m in gem.compiled_models() if all(m is not b for b in before)]


def compile_model(model, **options):
    torch._dynamo.reset()
    gem.reset_fallback_report()
    return torch.compile(model, backend="gemmstone", dynamic=False,
                         options={"config": "tiny"} | options)


class SortsAndSums(torch.nn.Module):
    """A linear layer whose output also goes through torch.sort and torch.cumsum."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 8)

    def forward(self, x):
        a = torch.relu(self.fc(x))
        return a, torch.sort(a, dim=1).values, torch.cumsum(a, dim=1)


def test_unsupported_ops_run_on_the_host_beside_the_device():
    torch.manual_seed(0)
    model, x = SortsAndSums().eval(), torch.randn(4, 16)
    compiled = compile_model(model)
    before = gem.compiled_models()
    with torch.no_grad():
        a, ordered, sums = compiled(x)
        want = model(x)[0]
    assert cosine(a, want) >= 0.99
    # The host ops are PyTorch's own, on what the device returned.
    assert torch.equal(ordered, torch.sort(a, dim=1).values)
    assert torch.equal(sums, torch.cumsum(a, dim=1))
    report = gem.fallback_report()
    assert report.graphs == {"split": 1}
    assert report.host == {"sort": 1, "cumsum": 1}
    assert report.reasons == {"sort": "unsupported operator", "cumsum": "unsupported operator"}
    assert report.text().splitlines() == ["op      host calls  reason",
                                          "cumsum           1  unsupported operator",
                                          "sort             1  unsupported operator"]
    # One partition on the device: linear + relu as one compiled model.
    [loaded] = new_models(before)
    assert loaded.calls == 1 and loaded.compiled.report["totals"]["accelerator_ops"] == 1
    # Every call counts; a closed device is reopened and the partition loaded again.
    gem.close_devices()
    with torch.no_grad():
        again = compiled(x)
    assert torch.equal(again[0], a) and report.host == {"sort": 2, "cumsum": 2}


def test_a_graph_without_array_work_stays_on_the_host_and_equals_eager():
    class HostOnly(torch.nn.Module):
        def forward(self, x):
            return torch.sort(x).values * 2 + torch.cumsum(x, 0)

    x = torch.randn(5, 6)
    before = gem.compiled_models()
    out = compile_model(HostOnly())(x)
    assert torch.equal(out, HostOnly()(x))
    report = gem.fallback_report()
    assert report.graphs == {"host": 1} and new_models(before) == []
    assert report.host == {"sort": 1, "cumsum": 1, "mul": 1, "add": 1}
    assert report.reasons["mul"] == ("no matmul or convolution beside it (not worth a device "
                                     "round trip)")


class Upsamples(torch.nn.Module):
    """A convolution the frontend takes and a transposed one it refuses on conversion."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        return self.up(torch.relu(self.conv(x)))


def test_a_node_the_frontend_refuses_on_conversion_leaves_its_partition():
    torch.manual_seed(0)
    model, x = Upsamples().eval(), torch.randn(1, 4, 6, 6)
    before = gem.compiled_models()
    with torch.no_grad():
        out = compile_model(model)(x)
        want = model(x)
    # aten.convolution has a rule, but not for transposed convolution: it runs on the host.
    report = gem.fallback_report()
    assert report.host == {"convolution": 1}
    assert report.reasons == {"convolution": "transposed convolution is not supported"}
    [loaded] = new_models(before)
    assert loaded.compiled.report["totals"]["accelerator_ops"] == 1
    assert out.shape == want.shape and cosine(out, want) >= 0.99


def _renamed(module, support):
    """Partitions whose nodes are named unlike the main graph's."""
    partitions = _partition(module, support)
    for partition in partitions.values():
        for node in partition.module.graph.nodes:
            if node.op == "call_function":
                node._rename(f"{node.name}_renamed")
        partition.module.recompile()
    return partitions


def _ignoring_refusals(module, support):
    """Partitions as if the refused names matched no node."""
    support.refused = {}
    return _partition(module, support)


_partition = fallback.SplitGraph._partition


@pytest.mark.parametrize(("partition", "refused"), [
    # The frontend's error names 'convolution', not in the partition: all of it is refused.
    (_renamed, "'conv2d_renamed', 'convolution_renamed', 'relu_renamed'"),
    (_ignoring_refusals, "'convolution'")], ids=["not-in-graph", "refused-again"])
def test_a_refusal_that_changes_no_partition_runs_the_whole_graph_on_the_host(
        monkeypatch, partition, refused):
    # Once looped for ever: the same partition came back and was refused again.
    monkeypatch.setattr(fallback.SplitGraph, "_partition", staticmethod(partition))
    torch.manual_seed(0)
    model, x = Upsamples().eval(), torch.randn(1, 4, 6, 6)
    before = gem.compiled_models()
    compiled = compile_model(model)
    with torch.no_grad():
        with pytest.warns(UserWarning) as caught:
            out = compiled(x)
        want = model(x)
    trouble = (f"the frontend refused {refused}, which re-partitioning cannot take out of "
               f"the device partitions (not a node of the graph, or refused before)")
    assert [str(w.message) for w in caught if "gemmstone" in str(w.message)] == [
        f"gemmstone: {trouble}; the whole graph runs on the host"]
    assert torch.equal(out, want) and new_models(before) == []
    report = gem.fallback_report()
    assert report.graphs == {"host": 1} and report.host == {"conv2d": 1, "relu": 1,
                                                             "conv_transpose2d": 1}
    assert report.reasons["relu"].startswith(f"{trouble}; ")


def test_partitions_drop_their_calibration_inputs_once_loaded():
    torch.manual_seed(0)
    module = torch.fx.symbolic_trace(SortsAndSums().eval())
    samples = [(torch.randn(4, 16),), (torch.randn(4, 16),)]
    loads = []

    def load(graph, positions, seen):
        loads.append(seen)
        return lambda *args: None

    split = fallback.SplitGraph(module, [torch.randn(4, 16)], samples, load, "test")
    # The partition (linear + relu) was calibrated on each sample's input...
    [partition] = split.partitions.values()
    [seen] = loads
    assert len(seen) == 2
    assert all(torch.equal(got, x) for (got,), (x,) in zip(seen, samples, strict=True))
    # ...and keeps none of them.
    assert partition.recorded == [] and partition.run is not None


class WritesInPlace(torch.nn.Module):
    """In-place ops on an intermediate and on the input itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        x.mul_(2)
        return self.fc(x).add_(1).relu_()


def test_in_place_ops_write_the_input_as_eager_does():
    torch.manual_seed(0)
    model, x = WritesInPlace().eval(), torch.randn(6, 8)
    mine, theirs = x.clone(), x.clone()
    with torch.no_grad():
        out = compile_model(model)(mine)
        want = model(theirs)
    assert torch.equal(mine, theirs) and torch.equal(mine, 2 * x)
    assert cosine(out, want) >= 0.99 and bool((out >= 0).all())
    # The write-back is the host's; the rest is one partition.
    report = gem.fallback_report()
    assert report.graphs == {"split": 1} and report.host == {"copy_": 1}
    with pytest.raises(FrontendError, match=r"^torch node 'mul' \(output\): the graph writes "
                                            r"to its input 'x' in place "
                                            r"\(USER_INPUT_MUTATION\)$"):
        compile_model(model, fallback=False)(x.clone())


class Selects(torch.nn.Module):
    """Data-dependent shapes: rows picked by a mask, and nonzero."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        h = self.fc(x)
        return h[x[:, 0] > 0], torch.nonzero(x > 0.5)


@pytest.mark.parametrize("in_graph", [False, True], ids=["graph-break", "captured"])
def test_data_dependent_ops(in_graph):
    torch.manual_seed(1)
    model, x = Selects().eval(), torch.randn(9, 8)
    # Dynamo breaks the graph at them unless told to capture them with unbacked sizes.
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=in_graph):
        with torch.no_grad():
            rows, where = compile_model(model)(x)
            want_rows, want_where = model(x)
    assert rows.shape == want_rows.shape and cosine(rows, want_rows) >= 0.99
    assert torch.equal(where, want_where)
    report = gem.fallback_report()
    assert report.host["gt"] >= 1 and report.graphs["split"] >= 1


def test_a_graph_made_dynamic_by_dynamo_runs_on_the_host_with_a_warning():
    torch.manual_seed(0)
    model = SortsAndSums().eval()
    torch._dynamo.reset()
    gem.reset_fallback_report()
    compiled = torch.compile(model, backend="gemmstone", options={"config": "tiny"})
    xs = [torch.randn(3, 16), torch.randn(5, 16)]
    with torch.no_grad():
        first = compiled(torch.randn(2, 16))[0]
        # A second shape makes Dynamo recompile with symbolic sizes, reused for a third.
        with pytest.warns(UserWarning, match=r"^gemmstone: a graph with dynamic shapes "
                                             r"\(compile with dynamic=False to run on the "
                                             r"device\) runs on the host$"):
            outs = [compiled(x) for x in xs]
        wants = [model(x) for x in xs]
    assert first.shape == (2, 8)
    for out, want in zip(outs, wants, strict=True):
        assert all(torch.equal(o, w) for o, w in zip(out, want, strict=True))
    report = gem.fallback_report()
    assert report.graphs == {"split": 1, "host": 1}
    assert report.host["linear"] == 2 and report.host["sort"] == 3


class DigitsTop3(torch.nn.Module):
    def __init__(self, cnn: torch.nn.Module) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, x):
        logits = self.cnn(x)
        return logits, torch.topk(logits, 3).indices


def test_a_partition_calibrates_on_what_reaches_it_and_matches_the_whole_graph():
    from gemmstone.compiler.models import load_digits_split

    cnn, _ = build("digits", trained=True)
    x_train, _, x_test, y_test = load_digits_split()
    x = torch.from_numpy(x_test[:100])
    options = {"config": "small", "calibration": [torch.from_numpy(x_train[:100])]}
    with torch.no_grad():
        logits, top3 = compile_model(DigitsTop3(cnn), **options)(x)
        assert gem.fallback_report().host == {"topk": 1}
        whole = compile_model(cnn, **options)(x)
        float_logits = cnn(x)
    # The CNN partition, calibrated on the same images, gives what the whole CNN gives.
    assert torch.equal(logits, whole)
    assert torch.equal(top3, torch.topk(logits, 3).indices)
    accuracy = float((logits.argmax(1).numpy() == y_test[:100]).mean())
    assert accuracy >= float((float_logits.argmax(1).numpy() == y_test[:100]).mean()) - 0.01


def test_user_errors_still_raise():
    model = SortsAndSums().eval()
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed,
                       match=r"ConfigError: unknown preset 'huge'"):
        compile_model(model, config="huge")(torch.randn(2, 16))
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed,
                       match=r"ValueError: option 'backend': unknown backend 'fpga'; choose "
                             r"one of 'func', 'rtl', 'perf'"):
        compile_model(model, backend="fpga")(torch.randn(2, 16))


def test_a_calibration_sample_with_the_wrong_number_of_inputs_is_refused():
    model, x = SortsAndSums().eval(), torch.randn(2, 16)
    # Raised on the first call, when the split graph calibrates (the sort makes it split).
    with pytest.raises(ValueError, match=r"^calibration sample 1 has 2 inputs, expected 1: one "
                                         r"per runtime input of the graph \(its parameters "
                                         r"and buffers are not given\)$"):
        compile_model(model, calibration=[x, (x, x)])(x)
