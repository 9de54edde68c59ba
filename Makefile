# Entry points: `make demo` (the main job on the built-in default), `make test` (every test), `make test-fast`
# (the tests not marked slow: the inner loop) and `make lint` (ruff lint and format check, mypy).
# Both create ./.venv (Python 3.11) on first use and reinstall only when pyproject.toml changes.
# `make demo` installs glassgem with its core dependencies only: the demo needs none of the extras.
# `make test`, `make test-fast` and `make lint` install the dev extras on top (pytest, ruff, mypy, ONNX export,
# PyAV, diffusers/transformers: ~6 GB).
# The `glassgem` command then lives in .venv/bin: `. .venv/bin/activate`, or call .venv/bin/glassgem.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-core
DEV_STAMP := $(VENV)/.installed-dev
# where the real-scene photos are fetched from (a URL prefix, or a folder of clones: see docs/real-scenes.md)
SCENES_FROM ?= https://github.com

.PHONY: demo test test-fast lint venv clean bench

$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

$(DEV_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(DEMO_STAMP)

venv: $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/glassgem demo --out demo_out --real-scenes real_scenes --scenes-from $(SCENES_FROM)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# ruff and mypy read their settings from pyproject.toml (mypy: the files it checks too)
lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(DEMO_STAMP)
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) demo_out real_scenes .pytest_cache .mypy_cache .ruff_cache
