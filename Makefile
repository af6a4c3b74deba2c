# nnp-lab: `make lab` opens JupyterLab with the NNP Lab sidebar, `make demo` runs the headless
# end-to-end demo, `make test` the whole test suite. All create .venv and install everything
# on first use (CPU torch pinned here; the package itself accepts any torch >= 2.2), build the
# JupyterLab extension (node >= 18), and install Debian's chromium for the browser tests.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
EXT_STAMP := $(VENV)/.extension
PYTEST_ARGS ?=
LAB_PORT ?= 8888
EXT_SOURCES := $(wildcard extension/src/*.ts extension/style/*.css extension/schema/*.json) \
	extension/package.json extension/pyproject.toml extension/yarn.lock

.PHONY: install demo lab test test-fast lint format clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(EXT_STAMP): $(STAMP) $(EXT_SOURCES)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pip install --quiet ./extension
	touch $@

install: $(STAMP) $(EXT_STAMP)

# Debian's chromium for the browser tests (skipped, with a reason, where it cannot be had)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium: browser tests will be skipped"; }

demo: $(STAMP)
	$(BIN)/nnp-lab demo --out demo_out

lab: install
	@echo "JupyterLab with NNP Lab: open the URL printed below (http://127.0.0.1:$(LAB_PORT)/lab?token=...)"
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT)

lint: $(STAMP)
	$(BIN)/ruff check nnp_lab tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format nnp_lab tests benchmarks
	$(BIN)/ruff check --fix nnp_lab tests benchmarks

test: install browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache .hypothesis extension/node_modules \
		extension/lib extension/nnp_lab_extension/labextension
