"""gemmstone.compiler: framework graphs to gemmstone programs (never imports gemmstone.hw)."""
