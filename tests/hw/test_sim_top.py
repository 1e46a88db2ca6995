"""`gemmstone.hw.sim_top.merge_reset_branches`: runs of reset branches become one branch,
and nothing else changes (the rtl backend's equivalence of the native and cocotb
simulators, tests/driver/test_rtl.py, checks the merged design end to end)."""

from __future__ import annotations

from gemmstone.hw.sim_top import merge_reset_branches

AMARANTH = """  always @* begin
    \\$6  = weight1;
    if (load) begin
      \\$6  = load_data;
    end
    if (\\$5 ) begin
      \\$6  = 8'h00;
    end
    if (core__soft_reset) begin
      \\$6  = 8'h00;
    end
    if (rst) begin
      \\$6  = 8'h00;
    end
  end
"""


def test_a_run_of_equal_constant_assignments_becomes_one_branch():
    merged = merge_reset_branches(AMARANTH)
    assert merged == """  always @* begin
    \\$6  = weight1;
    if (load) begin
      \\$6  = load_data;
    end
    if ((\\$5 ) | (core__soft_reset) | (rst)) begin
      \\$6  = 8'h00;
    end
  end
"""


def test_branches_that_differ_or_do_not_touch_stay_apart():
    other_constant = AMARANTH.replace("if (rst) begin\n      \\$6  = 8'h00;",
                                      "if (rst) begin\n      \\$6  = 8'h01;")
    assert "if ((\\$5 ) | (core__soft_reset)) begin" in merge_reset_branches(other_constant)
    assert "if (rst) begin\n      \\$6  = 8'h01;" in merge_reset_branches(other_constant)
    other_target = AMARANTH.replace("if (rst) begin\n      \\$6 ", "if (rst) begin\n      \\$7 ")
    assert "if (rst) begin\n      \\$7  = 8'h00;" in merge_reset_branches(other_target)
    apart = AMARANTH.replace("    if (rst)", "    \\$6  = 8'h00;\n    if (rst)")
    assert "if ((\\$5 ) | (core__soft_reset)) begin" in merge_reset_branches(apart)
    assert "    if (rst) begin\n" in merge_reset_branches(apart)


def test_text_without_runs_is_unchanged():
    # A value that is not a constant (it could depend on the target) is never merged.
    text = AMARANTH.replace("= 8'h00;", "= \\$6  + 8'h01;")
    assert merge_reset_branches(text) == text
    assert merge_reset_branches("module m;\nendmodule\n") == "module m;\nendmodule\n"
