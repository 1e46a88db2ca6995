"""The whole accelerator on Verilator against the functional model, byte for byte.

Programs from the reference generator (GEMM and conv with random shapes) and bad programs
run on the RTL (cocotb_accelerator.py, with cocotbext-axi bus models) and on the
functional model; the final memory must be identical over the whole RAM, and faults must
leave the same error code, instruction index and address in the registers. One Verilator
build per configuration (a few minutes cold on 2 cores, cached after).
"""

from __future__ import annotations

import numpy as np
import pytest
from accelerator_runs import check, make_run, play, verilated

from gemmstone.compiler.kernels.cases import conv_case, gemm_case
from gemmstone.hw.register_map import config_id, isa_id
from gemmstone.isa import Program, assemble


@pytest.fixture(scope="module", params=["tiny", "small", "rect"])  # 4x4, 8x8, 4x8
def accelerator(request):
    return verilated(request.param)


def test_kernels_and_faults_match_the_functional_model(accelerator, tmp_path):
    config, model = accelerator
    rng = np.random.default_rng(2026)
    cases = [
        ("gemm 1x1x1", *gemm_case(config, rng, 1, 1, 1)),
        ("gemm 13x9x21", *gemm_case(config, rng, 13, 9, 21)),
        ("gemm 33x17x40", *gemm_case(config, rng, 33, 17, 40)),
        ("conv 7x6x5 k3 s1 p1", *conv_case(config, rng, 7, 6, 5, 6, 3, 1, 1)),
        ("conv 9x9x3 k3 s2 p0", *conv_case(config, rng, 9, 9, 3, 5, 3, 2, 0)),
    ]
    # Each case also carries its numpy result; the model's memory is compared here.
    expectations = [make_run(name, config, program, inputs)
                    for name, program, inputs, _ in cases]
    expectations.append(make_run(
        "gemm under bus stalls", config, cases[2][1], cases[2][2], stall=0.3, seed=5))
    for name, text in (
        ("illegal opcode", "load n=1 len=1\nfence\n.word 0xc\nhalt"),
        ("load outside the window", "load dram=0x1000 stride=16 n=4 len=4\nhalt"),
        ("store outside the window", "store dram=0xff8 n=1 len=4 mode=int32\nhalt"),
        ("scratchpad range", f"load spad={config.spad_lines - 1} n=2 len=1\nhalt"),
        ("accumulator range", f"matmul acc={config.acc_rows - 2} n=3\nhalt"),
        ("token underflow", "load len=1\nmatmul n=1 pop_prev\nhalt"),
        ("token deadlock", "load len=1 pop_next\nmatmul n=1 pop_prev push_prev\nhalt"),
        ("tokens left at halt", "load len=1 push_next\nhalt"),
        ("no halt", "load len=1"),
    ):
        program = Program(config.content_hash, assemble(text), window_size=0x1000)
        expectations.append(make_run(name, config, program))
    assert all(expected.error is None for expected in expectations[:6])
    assert all(expected.error is not None for expected in expectations[6:])
    results = play(model, [expected.run for expected in expectations], tmp_path)
    check(results, expectations)
    assert results[0]["CONFIG_ID"] == config_id(config)
    assert results[0]["ISA_ID"] == isa_id()
