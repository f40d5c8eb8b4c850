# The one task runner: local work, CI (.ci/run) and the README commands all go through it.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK = 1
export PIP_ROOT_USER_ACTION = ignore

.PHONY: help deps build-dev build-prod build-profiling format lint test test-rust test-python demo bench bench-quick bench-peer zoo diff-peer stubtest docs dist wheel-smoke clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps:  ## install torch, test tools and graphviz (skips what is already there)
	@$(PYTHON) -c "import torch, torchvision, transformers" 2>/dev/null || \
		$(PIP) install -q torch torchvision transformers
	@$(PYTHON) -c "import numpy, pytest, maturin, ruff, pandas, pyarrow, safetensors, tqdm, mypy" 2>/dev/null || \
		$(PIP) install -q numpy pytest maturin ruff pandas pyarrow safetensors tqdm mypy
	@$(PYTHON) -c "import nbclient, nbformat, ipykernel" 2>/dev/null || \
		$(PIP) install -q nbclient nbformat ipykernel
	@$(PYTHON) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || \
		$(PIP) install -q mkdocs mkdocs-material "mkdocstrings[python]"
	@$(PYTHON) -c "from jupyter_client.kernelspec import KernelSpecManager as K; K().get_kernel_spec('python3')" 2>/dev/null || \
		$(PYTHON) -m ipykernel install --user --name python3 >/dev/null
	@command -v dot >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; }

build-dev: deps  ## debug build of the extension, installed editable
	rm -f python/torchlens/_core*.so
	MATURIN_PEP517_ARGS="--profile dev" $(PIP) install -q --no-build-isolation -e .

build-prod: deps  ## release build of the extension, installed editable
	rm -f python/torchlens/_core*.so
	$(PIP) install -q --no-build-isolation -e .

build-profiling: deps
	rm -f python/torchlens/_core*.so
	MATURIN_PEP517_ARGS="--profile profiling" $(PIP) install -q --no-build-isolation -e .

format:  ## format Rust and Python
	cargo fmt --all
	$(PYTHON) -m ruff format python tests benches
	$(PYTHON) -m ruff check --fix python tests benches

lint:  ## formatting, clippy and ruff checks
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches

test-rust:  ## core unit and integration tests
	cargo test -p torchlens-core --release

test-python: build-prod  ## pytest over the public API
	$(PYTHON) -m pytest -q $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

stubtest: build-prod  ## the _core.pyi stub matches the compiled module
	$(PYTHON) -m mypy.stubtest torchlens._core

test: deps lint test-rust test-python stubtest bench-quick docs wheel-smoke  ## everything CI runs

demo: build-prod  ## log the README's models and print what torchlens sees
	$(PYTHON) examples/demo.py

bench: build-prod  ## full benchmark suite -> benches/results/latest.json + .md, hot-path breakdown and floor, Rust core
	$(PYTHON) benches/run.py --mode full
	$(PYTHON) benches/hotpath.py | tee benches/results/hotpath.md
	$(PYTHON) benches/microbench.py | tee benches/results/microbench.md
	$(PYTHON) benches/profile_hotpath.py | tee benches/results/profile_hotpath.md
	$(PYTHON) benches/profile_hotpath.py --grad | tee -a benches/results/profile_hotpath.md
	$(PYTHON) benches/bundle_bench.py --repeat 3 | tee benches/results/bundles.txt
	$(PYTHON) benches/bundle_shard_bench.py --repeat 3 | tee benches/results/bundle_shards.md
	$(PYTHON) benches/fastlog_floor.py | tee benches/results/fastlog_floor.txt
	$(PYTHON) benches/backward_bench.py | tee benches/results/backward.md
	cargo bench -p torchlens-core --bench finalize -- --warm-up-time 1 --measurement-time 3

bench-quick: build-prod  ## small benchmark subset (smoke test; never fails on timing)
	$(PYTHON) benches/run.py --mode quick

PEER_VENV ?= /tmp/torchlens-peer-venv
bench-peer: build-prod  ## same benchmarks for us and TorchLens 2.15.0 (separate venv), side by side
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(PEER_VENV)
	$(PEER_VENV)/bin/python -c "import torchlens, sys; sys.exit(torchlens.__version__ != '2.15.0')" 2>/dev/null || \
		$(PEER_VENV)/bin/pip install -q "torchlens==2.15.0"
	$(PYTHON) benches/run.py --mode full --out benches/results/latest.json
	$(PYTHON) benches/run.py --mode full --impl peer --python $(PEER_VENV)/bin/python --out benches/results/peer.json
	$(PYTHON) benches/compare.py benches/results/latest.json benches/results/peer.json

zoo: build-prod  ## differential zoo (200+ models): validation, module outputs, outputs -> docs/zoo.md
	$(PYTHON) benches/zoo.py

diff-peer: build-prod  ## zoo under us and TorchLens 2.15.0 (separate venv), compared -> benches/results/diff-peer.md
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(PEER_VENV)
	$(PEER_VENV)/bin/python -c "import torchlens, sys; sys.exit(torchlens.__version__ != '2.15.0')" 2>/dev/null || \
		$(PEER_VENV)/bin/pip install -q "torchlens==2.15.0"
	$(PYTHON) benches/diff_peer.py --peer-python $(PEER_VENV)/bin/python

docs: deps  ## the docs site (mkdocs, material, API reference from docstrings) -> site/, warnings are errors
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict -d site

DIST_DIR ?= dist
# Release builds share target/ with build-prod (same interpreter, same profile), so cargo reuses the
# compiled crates and only links and packages again.
dist: deps  ## release abi3 wheel (CPython >= 3.10) and sdist -> dist/
	rm -rf $(DIST_DIR)
	$(PYTHON) -m maturin build --release -i $(PYTHON) --out $(DIST_DIR)
	$(PYTHON) -m maturin sdist --out $(DIST_DIR)

# A fresh venv outside the clone that reuses the machine's torch (--system-site-packages); the
# wheel's own copy must shadow the machine's editable install of this tree, which the smoke checks.
wheel-smoke: dist  ## install dist/*.whl into a fresh venv outside the clone and run the README quick start there
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv --system-site-packages "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install -q --no-deps $(DIST_DIR)/*.whl && \
	cp tests/wheel_smoke.py "$$tmp/" && cd "$$tmp" && \
	env -u PYTHONPATH "$$tmp/venv/bin/python" wheel_smoke.py "$(CURDIR)"

clean:
	rm -rf target python/torchlens/_core*.so benches/results/latest.* $(DIST_DIR) site
