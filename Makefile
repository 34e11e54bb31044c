# vportd — every target installs what it needs first (scripts/ensure-env.sh):
# apt packages as root on Debian 12, then the venv in .venv.

SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help env test test-fast lint fmt bench demo clean

help: ## list the targets
	@echo "vportd make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  %-9s %s\n", $$1, $$2 }'
	@echo "Pass pytest options with PYTEST_ARGS, e.g. make test PYTEST_ARGS='-k migrate -x'"

env: ## install apt packages (root) and the venv in .venv
	@bash scripts/ensure-env.sh

# pytest collects tests/ (testpaths in pyproject.toml) unless PYTEST_ARGS names paths.
test: env ## run the whole test suite (PYTEST_ARGS passed to pytest)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: env ## the fast tier: no root, no OVS, no etcd, no install (a couple of minutes)
	$(BIN)/pytest -m "not root and not ovs and not etcd and not install" $(PYTEST_ARGS)

lint: env ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy --strict

fmt: env ## format and auto-fix with ruff
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: env ## run the benchmark (writes BENCHMARKS.md)
	$(BIN)/vportctl bench

demo: env ## run the migration demo
	$(BIN)/vportctl demo

clean: ## remove the venv, caches and build output
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune \
		-exec rm -rf {} +
