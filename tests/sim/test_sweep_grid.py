"""Sweep grids from TOML and command-line options, and the workload specs and shapes."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

from gemmstone.config import PRESETS, AcceleratorConfig, ConfigError
from gemmstone.sim.sweep.grid import (
    Grid,
    GridError,
    load_grid,
    parse_batches,
    parse_grid,
    parse_param,
)
from gemmstone.sim.sweep.workloads import (
    BERT_BASE_GEMM,
    RESNET18_CONV,
    ConvPart,
    GemmPart,
    WorkloadError,
    parse_workload,
)

# Verbatim copies of the project-wide workload tables (../shared/workloads when written),
# kept in benchmarks/workloads so a clean clone can check the package's shapes against them.
SHARED = Path(__file__).resolve().parents[2] / "benchmarks" / "workloads"

GRID_TOML = """
preset = "tiny"
workloads = ["gemm:16x8x32", "resnet18-conv:conv1,layer4.0.downsample", "bert-gemm:sum"]
batches = [2, 1]
memory = "axi-ram"
engine = "analytic"

[base]
spad_kib = 32

[grid]
dram_bytes_per_cycle = [4, 8, 3]
array = ["4x4", "8x4"]
"""


def test_toml_grid(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(GRID_TOML)
    grid = load_grid(path)
    assert grid.base == PRESETS["tiny"].replace(spad_kib=32)
    assert grid.axes == {"dram_bytes_per_cycle": (4, 8, 3), "array": ("4x4", "8x4")}
    assert grid.batches == (1, 2)
    assert grid.memory == "axi-ram"
    assert grid.engine == "analytic"
    assert [w.name for w in grid.workloads] == [
        "gemm 16x8x32", "resnet18.conv1", "resnet18.layer4.0.downsample", "bert.sum"]
    points = grid.points()
    # The Cartesian product in file order, the last axis fastest.
    expected = list(itertools.product((4, 8, 3), ((4, 4), (8, 4))))
    assert [(p.params["dram_bytes_per_cycle"], (p.params["rows"], p.params["cols"]))
            for p in points] == expected
    assert [p.index for p in points] == list(range(6))
    good = points[3]
    assert good.error is None
    assert good.config == PRESETS["tiny"].replace(spad_kib=32, dram_bytes_per_cycle=8, rows=8)
    # An invalid point is kept with the config's own message.
    bad = points[4]
    assert bad.config is None
    with pytest.raises(ConfigError) as error:
        AcceleratorConfig(**bad.params)
    assert bad.error == str(error.value) == (
        "'dram_bytes_per_cycle' must be a positive power of two, not 3")
    assert grid.swept == ["dram_bytes_per_cycle", "array"]


def test_config_file_relative_to_grid(tmp_path: Path) -> None:
    PRESETS["rect"].save(tmp_path / "accel.toml")
    (tmp_path / "grid.toml").write_text('config = "accel.toml"\nworkloads = ["gemm:4x4x4"]\n')
    grid = load_grid(tmp_path / "grid.toml")
    assert grid.base == PRESETS["rect"]
    assert [p.config for p in grid.points()] == [PRESETS["rect"]]
    # No memory or engine given: the in-simulation DRAM and the exact compiled engine.
    assert (grid.memory, grid.engine) == ("dram", "compiled")


@pytest.mark.parametrize(("data", "message"), [
    ({"grid": {"rws": [4]}}, "g [grid]: unknown parameter 'rws'; sweepable: rows, cols, "
                             "dataflow, input_type, weight_type, acc_type, spad_kib, "
                             "spad_banks, acc_kib, acc_banks, dram_bytes_per_cycle, "
                             "dram_latency, dram_mib, queue_depth, token_depth, cores, "
                             "topology, link_bytes_per_cycle, array"),
    ({"grid": {"rows": [4, "eight"]}}, "g [grid]: 'rows' takes integers, not 'eight'"),
    ({"grid": {"rows": [4.0]}}, "g [grid]: 'rows' takes integers, not 4.0"),
    ({"grid": {"topology": [1]}}, "g [grid]: 'topology' takes strings, not 1"),
    ({"grid": {"array": ["4by4"]}},
     "g [grid]: 'array' takes ROWSxCOLS values like '16x16', not '4by4'"),
    ({"grid": {"rows": []}}, "g [grid]: 'rows' has no values"),
    ({"grid": {"array": ["4x4"], "rows": [4]}}, "g [grid]: sweep 'array' or rows/cols, not both"),
    ({"grids": {}}, "g: unknown key(s) 'grids'; expected preset, config, workloads, batches, "
                    "memory, engine, base, grid"),
    ({"preset": "huge"}, "g: unknown preset 'huge'; choose one of tiny, small, rect, base"),
    ({"preset": "tiny", "config": "x.toml"}, "g: give a preset or a config file, not both"),
    ({"base": {"rows": 3}}, "g [base]: 'rows' must be a power of two from 2 to 128, not 3"),
    ({"base": {"row": 4}}, "g [base]: unknown parameter 'row'; sweepable: rows, cols, "
                           "dataflow, input_type, weight_type, acc_type, spad_kib, "
                           "spad_banks, acc_kib, acc_banks, dram_bytes_per_cycle, "
                           "dram_latency, dram_mib, queue_depth, token_depth, cores, "
                           "topology, link_bytes_per_cycle, array"),
    ({"memory": "hbm"}, "g: memory must be one of 'dram', 'axi-ram', not 'hbm'"),
    ({"engine": "fast"}, "g: engine must be one of 'compiled', 'python', 'analytic', not 'fast'"),
    ({"engine": ["python"]}, "g: engine must be one of 'compiled', 'python', 'analytic', not "
                             "['python']"),
    ({"batches": [0, 1]}, "g: batches must be a non-empty list of positive integers, not "
                          "[0, 1]"),
    ({"workloads": "gemm:4x4x4"}, "g: 'workloads' must be a list of strings, not "
                                  "'gemm:4x4x4'"),
    ({"workloads": ["gemm:4x4"]},
     "g: workload 'gemm:4x4': a GEMM is gemm:MxNxK, e.g. gemm:128x768x768"),
    ({"grid": 4}, "g: [grid] must be a table"),
])
def test_bad_grids(data: dict, message: str) -> None:
    with pytest.raises(GridError) as error:
        parse_grid(data, where="g")
    assert str(error.value) == message


def test_bad_engine_file_and_grid(tmp_path: Path) -> None:
    """A bad engine is refused by name in a TOML file and in a grid built in Python."""
    path = tmp_path / "grid.toml"
    path.write_text('engine = "numba"\nworkloads = ["gemm:4x4x4"]\n')
    with pytest.raises(GridError) as error:
        load_grid(path)
    assert str(error.value) == (f"{path}: engine must be one of 'compiled', 'python', "
                                f"'analytic', not 'numba'")
    with pytest.raises(GridError) as error:
        Grid(PRESETS["tiny"], engine="exact")
    assert str(error.value) == ("Grid: engine must be one of 'compiled', 'python', "
                                "'analytic', not 'exact'")
    with pytest.raises(GridError) as error:
        Grid(PRESETS["tiny"], memory="hbm")
    assert str(error.value) == "Grid: memory must be one of 'dram', 'axi-ram', not 'hbm'"


def test_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("grid = [")
    with pytest.raises(GridError, match=r"^.*bad.toml: TOML does not parse: "):
        load_grid(path)
    with pytest.raises(GridError) as error:
        load_grid(tmp_path / "missing.toml")
    assert str(error.value) == (f"cannot read sweep file {str(tmp_path / 'missing.toml')!r}: "
                                f"No such file or directory")


def test_cli_params() -> None:
    assert parse_param("dram_bytes_per_cycle=4, 8,0x10") == ("dram_bytes_per_cycle", (4, 8, 16))
    assert parse_param("array=8x8,16X4") == ("array", ("8x8", "16x4"))
    assert parse_param("topology=ring,mesh") == ("topology", ("ring", "mesh"))
    for option, message in [
        ("rows", "--param rows: expected NAME=VALUE[,VALUE...], e.g. dram_bytes_per_cycle=4,8,16"),
        ("rows=", "--param rows=: expected NAME=VALUE[,VALUE...], e.g. "
                  "dram_bytes_per_cycle=4,8,16"),
        ("rows=4,x", "--param rows=4,x: 'rows' takes integers, not 'x'"),
        ("bandwidth=4", "--param bandwidth=4: unknown parameter 'bandwidth'; sweepable: rows, "
                        "cols, dataflow, input_type, weight_type, acc_type, spad_kib, "
                        "spad_banks, acc_kib, acc_banks, dram_bytes_per_cycle, dram_latency, "
                        "dram_mib, queue_depth, token_depth, cores, topology, "
                        "link_bytes_per_cycle, array"),
    ]:
        with pytest.raises(GridError) as error:
            parse_param(option)
        assert str(error.value) == message


def test_cli_batches() -> None:
    assert parse_batches("4") == (1, 2, 3, 4)
    assert parse_batches("2-4") == (2, 3, 4)
    assert parse_batches("8,1,2") == (1, 2, 8)
    with pytest.raises(GridError) as error:
        parse_batches("a-b")
    assert str(error.value) == "--batches a-b: expected N (1..N), FIRST-LAST or a list like 1,2,4,8"
    with pytest.raises(GridError) as error:
        parse_batches("0,1")
    assert str(error.value) == ("--batches 0,1: batches must be a non-empty list of positive "
                                "integers, not [0, 1]")


def test_workload_specs(tmp_path: Path) -> None:
    [gemm] = parse_workload("gemm:128X768x64")
    assert (gemm.name, gemm.parts(3)) == ("gemm 128x768x64", [(GemmPart(384, 768, 64), 1)])
    assert [w.name for w in parse_workload("resnet18-conv")] == [
        f"resnet18.{row[0]}" for row in RESNET18_CONV]
    [layer] = parse_workload("resnet18-conv:layer2.0.downsample")
    assert layer.parts(2) == [(ConvPart(2, 56, 56, 64, 128, 1, 2, 0), 1)]
    [bert] = parse_workload("bert-gemm:sum")
    parts = bert.parts(2)
    assert parts[0] == (GemmPart(256, 768, 768), 1)
    assert parts[3] == (GemmPart(128, 128, 64), 24)  # per sequence and head: 12 x batch
    [model] = parse_workload("model:resnet18:64")
    assert (model.name, model.spec) == ("model resnet18 64", ("resnet18", 64))
    assert parse_workload("model:digits")[0].name == "model digits"
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(b"")
    [file] = parse_workload(str(onnx))
    assert (file.name, file.kind) == ("net.onnx", "file")
    with pytest.raises(WorkloadError) as error:
        file.parts(2)
    assert str(error.value) == ("net.onnx: a model file has fixed input shapes; batch must be "
                                "1, not 2")
    for spec, message in [
        ("gemm:0x4x4", "workload 'gemm:0x4x4': M must be a positive integer, not '0'"),
        ("model:vgg", "workload 'model:vgg': unknown model 'vgg'; choose one of digits, "
                      "resnet18, mobilenetv2, encoder"),
        ("model:digits:x", "workload 'model:digits:x': SIZE must be a positive integer, "
                           "not 'x'"),
        ("resnet18-conv:conv9", "resnet18-conv: unknown layer 'conv9'; choose from "
                                + ", ".join(row[0] for row in RESNET18_CONV) + " or 'sum'"),
        ("nothing.onnx", "workload 'nothing.onnx': no such model file 'nothing.onnx'"),
        ("vgg16", "unknown workload 'vgg16': expected gemm:MxNxK, resnet18-conv[:NAME|sum], "
                  "bert-gemm[:NAME|sum], model:NAME[:SIZE] (digits, resnet18, mobilenetv2, "
                  "encoder) or an .onnx/.pt2 file"),
    ]:
        with pytest.raises(WorkloadError) as error:
            parse_workload(spec)
        assert str(error.value) == message


def test_standard_shapes_match_published_figures() -> None:
    """The copied shapes give the published totals and equal the shared workload files."""
    convs = [ConvPart(1, *row[1:]) for row in RESNET18_CONV]
    assert sum(part.macs for part in convs) == 1_813_561_344
    bert = sum(m * n * k * count for _, m, n, k, count in BERT_BASE_GEMM)
    assert round(bert / 1e6, 1) == 931.1
    with (SHARED / "resnet18_conv.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["name"], *(int(r[key]) for key in ("h_in", "w_in", "c_in", "c_out", "kernel",
                                                   "stride", "pad"))) for r in rows] == [
        tuple(row) for row in RESNET18_CONV]
    assert [int(r["macs"]) for r in rows] == [part.macs for part in convs]
    assert [(int(r["h_out"]), int(r["w_out"])) for r in rows] == [p.output_size for p in convs]
    with (SHARED / "bert_base_s128_gemm.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["name"], *(int(r[key]) for key in ("m", "n", "k", "count_per_layer")))
            for r in rows] == [tuple(row) for row in BERT_BASE_GEMM]
