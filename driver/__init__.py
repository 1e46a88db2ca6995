"""gemmstone.driver: one device API over every backend, and the PyTorch integration."""
