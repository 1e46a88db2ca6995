# The two commands for a fresh machine: `make run` (the main job: a model through the
# accelerator) and `make test`. Each creates the local virtual environment .venv (or
# updates it when pyproject.toml is newer than its install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so an edited pyproject.toml triggers a reinstall.
INSTALLED := $(VENV)/.installed

# What `make run` runs; override on the command line: make run MODEL=resnet18 BACKEND=perf
MODEL ?= digits
BACKEND ?= func
PRESET ?= small

.PHONY: run demo test

run: $(INSTALLED)
	$(BIN)/gemmstone run $(MODEL) --backend $(BACKEND) --preset $(PRESET)

demo: $(INSTALLED)
	$(BIN)/gemmstone demo

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/pytest

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@
