"""cocotb tests, one of which fails on purpose: pytest must see cocotb failures
(test_systolic_array_verilator.py runs this module and expects `CocotbTestError`)."""

import cocotb
from cocotb.triggers import Timer


@cocotb.test()
async def passes(dut) -> None:
    await Timer(1, unit="ns")


@cocotb.test()
async def fails_on_purpose(dut) -> None:
    await Timer(1, unit="ns")
    assert int(dut.outputs__valid.value) == 1, "outputs__valid is 0 (as it should be)"
