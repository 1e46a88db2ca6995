"""gemmstone.fpga: board tops, host link and the open-toolchain build."""
