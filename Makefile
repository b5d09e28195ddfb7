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

# The test runs spread over one pytest-xdist worker per CPU (`logical`: a 2-vCPU CI machine gets 2
# even where its two vCPUs are one core's threads), at most 8: each worker imports and collects the
# whole suite (about 0.8-1 GB and 15-30 s), and a few tests start their own sweep, Dask or kernel
# processes, which need cores too. `worksteal` hands a worker that ran dry the other's queued tests,
# so one long test does not leave a core idle at the end. `make test XDIST=` runs them in one process.
XDIST ?= -n logical --maxprocesses 8 --dist worksteal

test: lint
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

golden: $(STAMP)
	$(BIN)/python -m pytest -q tests/golden

golden-update: $(STAMP)
	$(BIN)/python -m pytest -q tests/golden --update-golden

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(XDIST)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_hardware.py
	$(BIN)/python benchmarks/bench_engines.py 1 16 128
	$(BIN)/python benchmarks/bench_planner.py greedy auto
	$(BIN)/python benchmarks/bench_sweep.py 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist
