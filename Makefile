# `make demo` and `make test` do all the set-up themselves, into .venv at the repository root.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup test lint typecheck unit demo clean

setup: $(STAMP)

# Torch first, by exact version: the CPU wheel on disk satisfies it, so no resolver reaches for CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check vidsearch tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q

test: lint typecheck unit

demo: setup
	$(VENV)/bin/vidsearch demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
