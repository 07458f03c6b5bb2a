# The commands a user types (README, docs/development.md). Everything runs from .venv,
# created on first use; `make test` and the benchmarks first install the Debian programs
# they run (`make deps`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
# program:package pairs `make deps` checks: chromium (browser tests), promtool (alert rule
# tests; Debian's prometheus), wrk and redis-benchmark / redis-cli (the benchmark; redis-tools),
# git (the make-run test clones the checkout), haproxy (the load balancer in front of several
# web processes: its tests and the benchmark's stampede through it), amtool (the
# Alertmanager configuration's check; Debian's prometheus-alertmanager), and for the multi-host
# suite (tests/hosts) ip, nsenter and setpriv (network namespaces and entering them), prometheus
# and prometheus-alertmanager (the backlog alert across hosts).
DEPS ?= chromium:chromium promtool:prometheus wrk:wrk redis-benchmark:redis-tools redis-cli:redis-tools git:git haproxy:haproxy amtool:prometheus-alertmanager ip:iproute2 nsenter:util-linux setpriv:util-linux prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager

.DEFAULT_GOAL := help
.PHONY: help run deps test test-fast lint format bench bench-quick certs clean

help:
	@echo "make run          the whole stack on this machine (Ctrl-C stops it); installs requirements.txt into .venv"
	@echo "make test         the test suite against real servers; installs requirements-dev.txt and 'make deps'"
	@echo "make test-fast    the fast tier alone (tests/fast: the funnel's rules, no server), seconds"
	@echo "make lint         ruff (lint + format check), mypy and the import contracts"
	@echo "make bench        the load benchmark (ARGS=--quick for a smoke run)"
	@echo "make bench-quick  the benchmark's smoke run, every scenario at 100 connections (about four minutes)"
	@echo "make deps         the Debian programs the tests and benchmarks run (apt-get, as root or with sudo)"
	@echo "make certs        a self-signed certificate and key in deploy/tls/ for trying the compose stack over HTTPS"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt requirements-production.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-production.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/python -m devstack $(ARGS)

deps:
	@$(PYTHON) -m devstack.deps $(DEPS)

test: deps $(VENV)/.dev
	$(BIN)/python -m pytest --durations=25 $(ARGS)

# tests/fast only, without the suite's conftest (which starts Redis and PostgreSQL).
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -p no:django --confcutdir=tests/fast tests/fast $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: deps $(VENV)/.dev
	$(BIN)/python -m bench $(ARGS)

bench-quick: deps $(VENV)/.dev
	$(BIN)/python -m bench --quick $(ARGS)

# A self-signed pair for .env's TLS_CERT_FILE / TLS_KEY_FILE (ARGS="--host shop.example.com").
certs: $(VENV)/.dev
	$(BIN)/python -m devstack.certs $(ARGS)

clean:
	rm -rf .run artifacts bench/results .pytest_cache .mypy_cache .ruff_cache .hypothesis staticfiles
