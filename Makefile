# K8s-Lite: `make up` runs a cluster, `make test` runs the suite. Both start from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
NATIVE_SRC := $(wildcard rust/src/*.rs rust/src/*/*.rs) rust/Cargo.toml pyproject.toml
STAMP := $(VENV)/.k8slite-installed

.PHONY: up test venv install deps tools images lint bench clean

# Flags for k8slite up, e.g. make up UP_ARGS="--nodes 100 --proxy-mode nftables".
UP_ARGS ?=

up: install deps tools images
	$(BIN)/k8slite up $(UP_ARGS)

test: install deps tools images
	$(BIN)/python -m pytest -q tests

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

lint: install
	$(BIN)/python -m ruff check python tests benches
	cd rust && cargo clippy --release -- -D warnings

# The measurements, one after another (proxy.py needs root for its network namespaces).
BENCHES := codec cache storage create list watch scheduler hollow pod_startup proxy
bench: install deps tools images
	for b in $(BENCHES); do echo "== benches/$$b.py"; $(BIN)/python benches/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) rust/target target python/k8slite/*.so
