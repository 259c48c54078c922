# Two entry points, both self-contained on a fresh clone:
#   make run    - create/reuse .venv, install, run the local optimize pipeline on builtin digits
#   make test   - create/reuse .venv, install, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
OUTPUT_DIR ?= runs/latest
# two workers: CI has 2 cores; a module's tests stay in one worker (shared fixtures)
PYTEST_ARGS ?= -n 2 --dist loadfile

CHECKOV_VENV := build/checkov-venv

.PHONY: run test lint compile clean-venv

# Re-install only when the dependency declarations change.
$(VENV)/.installed: setup.cfg pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $@

# checkov (static scan of Dockerfiles and manifests) pins packaging below what the
# TensorFlow stack needs, so it gets a venv of its own.
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==3.3.30

run: $(VENV)/.installed
	$(BIN)/tfopt run --output-dir $(OUTPUT_DIR)

test: $(VENV)/.installed $(CHECKOV_VENV)/bin/checkov
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

compile: $(VENV)/.installed
	$(BIN)/tfopt compile --output-dir build/pipelines

clean-venv:
	rm -rf $(VENV)
