# The commands a user types (README). Everything runs from .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint format bench bench-quick clean

help:
	@echo "make run          the whole stack on this machine (Ctrl-C stops it)"
	@echo "make test         the test suite against real servers"
	@echo "make lint         ruff (lint + format check), mypy and the import contracts"
	@echo "make bench        the load benchmark (ARGS=--quick for a smoke run)"
	@echo "make bench-quick  the benchmark's smoke run (under a minute)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/python -m flashsale_project.launcher $(ARGS)

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(ARGS)

bench-quick: $(VENV)/.dev
	$(BIN)/python -m bench --quick $(ARGS)

clean:
	rm -rf .run artifacts bench/results .pytest_cache .mypy_cache .ruff_cache staticfiles
