# recsim: `make demo` sets up and runs the main job; `make test` sets up and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint format clean setup

setup: $(STAMP)

# Create or reuse the local virtualenv; reinstall when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recsim hw list
	$(BIN)/recsim hw show zionex
	$(BIN)/recsim hw show dgx-h100 --nodes 4
	$(BIN)/recsim workload show dlrm-dcnv2
	$(BIN)/recsim run --system dgx-h100 --workload dlrm-dcnv2 --batch-size 55296 --precision fp16 \
		--comm-dtype fp16 --set workload.embedding.dtype=fp16

lint: $(STAMP)
	$(BIN)/ruff check recsim tests benchmarks
	$(BIN)/ruff format --check recsim tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format recsim tests benchmarks
	$(BIN)/ruff check --fix recsim tests benchmarks

test: lint
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_hardware.py
	$(BIN)/python benchmarks/bench_engines.py 1 16
	$(BIN)/python benchmarks/bench_planner.py greedy auto

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist
