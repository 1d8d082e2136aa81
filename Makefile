# Quick start: `make demo`, `make test`. Both build .venv from the pinned files when it is
# missing or older than them, so a fresh clone needs nothing but Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test lint bench fuzz soak clean-demo help

help:
	@echo "make demo   run the nightly pipeline end to end on embedded services, then verify"
	@echo "make test   lint and run every test"
	@echo "make lint   ruff, including the Airflow (AIR) rules"
	@echo "make bench  run the benchmarks in bench/ and print their ratios"
	@echo "make fuzz   feed 10,000 generated payloads to every parser; print unhandled exceptions per parser"
	@echo "make soak   the long fault runs (tests marked soak), beyond what make test runs"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m soc2_evidence.demo $(ARGS)

test: $(STAMP) lint
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

fuzz: $(STAMP)
	$(BIN)/python -m fuzz $(ARGS)

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak $(ARGS)

clean-demo:
	rm -rf .airflow .demo
