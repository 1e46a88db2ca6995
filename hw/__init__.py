"""gemmstone.hw: the accelerator in Amaranth (never imports torch)."""
