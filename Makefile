# The two commands of the README: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setup.py compiles the CPU kernels into the package: reinstall when their sources change
$(STAMP): $(BIN)/python pyproject.toml constraints.txt setup.py $(wildcard src/bergab/optim/csrc/*)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bergab demo

test: $(STAMP)
	$(BIN)/python -m pytest -q src tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" src tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/optimizer_step.py --markdown
	$(BIN)/python benchmarks/fit_overhead.py
	$(BIN)/python benchmarks/lr_find_quality.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
