# recsim: `make demo` sets up and runs the main job; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint format clean setup golden golden-update

setup: $(STAMP)

# Create or reuse the local virtualenv; reinstall when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# A fresh run each time: a resumed store would keep the figures of whatever recsim made them.
demo: $(STAMP)
	rm -rf -- "$(CURDIR)/out/zionex-sharding"
	$(BIN)/recsim sweep experiments/zionex-sharding.yaml --out out/zionex-sharding

lint: $(STAMP)
	$(BIN)/ruff check recsim tests benchmarks experiments
	$(BIN)/ruff format --check recsim tests benchmarks experiments

format: $(STAMP)
	$(BIN)/ruff format recsim tests benchmarks experiments
	$(BIN)/ruff check --fix recsim tests benchmarks experiments

test: lint
	$(BIN)/python -m pytest -q -m "not slow"

golden: $(STAMP)
	$(BIN)/python -m pytest -q tests/golden

golden-update: $(STAMP)
	$(BIN)/python -m pytest -q tests/golden --update-golden

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_hardware.py
	$(BIN)/python benchmarks/bench_engines.py 1 16 128
	$(BIN)/python benchmarks/bench_planner.py greedy auto
	$(BIN)/python benchmarks/bench_sweep.py 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist
