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

test: $(VENV)/.installed-test
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
