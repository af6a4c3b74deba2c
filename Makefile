# nnp-lab: `make demo` runs the headless end-to-end demo, `make test` the whole test suite.
# Both create .venv and install everything on first use (CPU torch pinned here; the
# package itself accepts any torch >= 2.2).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nnp-lab demo --out demo_out

lint: $(STAMP)
	$(BIN)/ruff check nnp_lab tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format nnp_lab tests benchmarks
	$(BIN)/ruff check --fix nnp_lab tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .hypothesis
