# Two entry points, both self-contained on a fresh clone:
#   make run    - create/reuse .venv, install, run the local optimize pipeline on builtin digits
#   make test   - create/reuse .venv, install, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LITERT_SITE := $(VENV)/litert-site
OUTPUT_DIR ?= runs/latest
# two workers: CI has 2 cores; a module's tests stay in one worker (shared fixtures)
PYTEST_ARGS ?= -n 2 --dist loadfile

CHECKOV_VENV := build/checkov-venv

.PHONY: run test lint compile images clean-venv fashion-mnist

# Re-install only when the dependency declarations change.
$(VENV)/.installed: setup.cfg pyproject.toml requirements/constraints.txt requirements/litert.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	# LiteRT Quantizer + interpreter on a sys.path entry after site-packages (why: litert.txt)
	rm -rf $(LITERT_SITE)
	$(BIN)/python -m pip install -q --no-deps --target $(LITERT_SITE) -r requirements/litert.txt
	$(BIN)/python -c 'import os, sys, sysconfig; p = sysconfig.get_paths()["purelib"]; \
	  open(p + "/zz_tfopt_litert_site.pth", "w").write(os.path.relpath(sys.argv[1], p) + "\n")' \
	  $(LITERT_SITE)
	touch $@

# checkov (static scan of Dockerfiles and manifests) pins packaging below what the
# TensorFlow stack needs, so it gets a venv of its own.
# A failed install fails the target (and `make test`) and leaves no venv to pass for done.
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov==3.3.30 || { rm -rf $(CHECKOV_VENV); exit 1; }

# builtin:fashion_mnist reads Debian's dataset-fashion-mnist (31 MB, MIT): install it when
# apt is there and we are root; otherwise say the one command (tests needing it skip,
# saying why). Under CI (CI=true: root, apt reachable) a dataset still missing after this
# is a broken install: the target fails, and so would those tests.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
FASHION_MNIST_FILE := $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz
IN_CI := $(filter true TRUE True 1 yes,$(CI))
fashion-mnist:
	@if [ -f $(FASHION_MNIST_FILE) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "warning: could not install dataset-fashion-mnist"; \
	else echo "note: builtin:fashion_mnist needs: sudo apt-get install dataset-fashion-mnist"; fi
	@if [ -n "$(IN_CI)" ] && [ ! -f $(FASHION_MNIST_FILE) ]; then \
	  echo "error: CI=$(CI) but $(FASHION_MNIST_FILE) is missing (apt-get install dataset-fashion-mnist as root)" >&2; \
	  exit 1; fi

run: $(VENV)/.installed fashion-mnist
	$(BIN)/tfopt run --output-dir $(OUTPUT_DIR)

test: $(VENV)/.installed $(CHECKOV_VENV)/bin/checkov fashion-mnist
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

compile: $(VENV)/.installed
	$(BIN)/tfopt compile --output-dir build/pipelines

# The CPU image from this checkout's wheel on a base made here (no Docker Hub; as root it
# installs podman with images/engine.sh); prints its size and tag. For the registry base:
# images/build.sh (docs/containers.md).
images: $(VENV)/.installed
	LOCAL_BASE=1 FLAVOURS=cpu PYTHON=$(BIN)/python images/build.sh

clean-venv:
	rm -rf $(VENV)
