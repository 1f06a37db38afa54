# K8s-Lite: `make up` runs a cluster, `make test` runs the suite. Both start from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What the extension is built from (its Rust unit tests are not: editing them rebuilds nothing).
NATIVE_SRC := $(filter-out %/tests.rs,$(wildcard rust/src/*.rs rust/src/*/*.rs)) Cargo.toml \
	Cargo.lock rust/Cargo.toml pyproject.toml
STAMP := $(VENV)/.k8slite-installed

# Cargo run directly (tests, clippy) builds against the venv's interpreter, as maturin does,
# so the two share pyo3's build. The test binary embeds Python (maturin's builds leave
# libpython to the interpreter that loads them): the loader must find the interpreter's
# shared library, which for a pyenv or self-built Python is not on the default path.
PYLIBDIR = $(shell $(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
CARGO = PYO3_PYTHON=$(abspath $(BIN)/python) \
	LD_LIBRARY_PATH=$(PYLIBDIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} cargo

.PHONY: up test unit venv install deps tools images lint bench clean

# Flags for k8slite up, e.g. make up UP_ARGS="--nodes 100 --proxy-mode nftables".
UP_ARGS ?=

up: install deps tools images
	$(BIN)/k8slite up $(UP_ARGS)

test: install deps tools images
	$(CARGO) test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=30 tests

# The unit tests alone: no Docker, system packages, images or kubectl; under a minute.
unit: install
	$(BIN)/python -m pytest -q tests/unit

venv: $(BIN)/python

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Builds the Rust extension (release) and installs the package editable with test extras;
# then writes our bytecode once, for environments with PYTHONDONTWRITEBYTECODE set (CI's
# is), where every component process would otherwise compile our modules on each start.
install: $(STAMP)

$(STAMP): $(BIN)/python $(NATIVE_SRC)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q python/k8slite
	touch $(STAMP)

# System packages the node components use (iproute2, nftables, util-linux).
deps:
	hack/install-deps

tools: $(BIN)/python
	hack/get-kubectl

images:
	hack/build-images

# Style and types: ruff, mypy, the native module's stub against the built module (stubtest),
# rustfmt and clippy.
lint: install
	$(BIN)/python -m ruff check python tests benches
	$(BIN)/python -m ruff format --check python tests benches
	$(BIN)/python -m mypy python/k8slite
	$(BIN)/python -m mypy.stubtest k8slite._native --mypy-config-file pyproject.toml
	cargo fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# The measurements, one after another (proxy.py needs root for its network namespaces).
BENCHES := codec cache storage create list watch scheduler hollow pod_startup proxy
bench: install deps tools images
	for b in $(BENCHES); do echo "== benches/$$b.py"; $(BIN)/python benches/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) target python/k8slite/*.so
