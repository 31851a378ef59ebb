# The two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck bench bench-smoke openapi seed clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/fhir-server serve

test: $(VENV)/.installed-test standin
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

openapi: $(VENV)/.installed
	$(BIN)/fhir-server openapi --out openapi/openapi.json

seed: $(VENV)/.installed
	$(BIN)/python seed_data/generate.py

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run --size full

bench-smoke: $(VENV)/.installed-test
	$(BIN)/python -m bench.run --size smoke

clean:
	rm -rf $(VENV) data

# The MongoDB wire-protocol stand-in for the engine-parameterised tests (tests/storage/engines.py):
# mongoeco needs Python >= 3.13, so it gets its own environment on pyenv's 3.13.0. Without that
# interpreter (or PyPI) this only warns, and the stand-in runs of the tests skip, saying why.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
STANDIN_PY ?= $(PYENV_ROOT)/versions/3.13.0/bin/python3.13
STANDIN := .venv-standin

.PHONY: standin
standin: $(STANDIN)/.installed

$(STANDIN)/.installed: tests/storage/standin-requirements.txt
	@if [ -x "$(STANDIN_PY)" ]; then \
	  ( $(STANDIN_PY) -m venv $(STANDIN) && \
	    $(STANDIN)/bin/python -m pip install -q -r tests/storage/standin-requirements.txt && \
	    touch $@ ) || echo "warning: could not install the MongoDB stand-in; its tests will skip" >&2; \
	else \
	  echo "warning: $(STANDIN_PY) not found; the MongoDB stand-in tests will skip" >&2; \
	fi
