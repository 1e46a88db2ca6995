# The two commands for a fresh machine: `make demo` and `make test`. Each creates the local
# virtual environment .venv (or updates it when pyproject.toml is newer than its install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so an edited pyproject.toml triggers a reinstall.
INSTALLED := $(VENV)/.installed

.PHONY: demo test

demo: $(INSTALLED)
	$(BIN)/gemmstone demo

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/pytest

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@
