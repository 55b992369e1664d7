# Two commands on a fresh machine: `make demo` (set-up + the pipeline on its embedded default) and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test bench

setup:
	@start=$$(date +%s); \
	$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || exit 1; \
	$(UV) sync --frozen || exit 1; \
	echo "set-up took $$(( $$(date +%s) - start )) s"

demo: setup
	$(UV) run --frozen python -m gpu_simulate_test.cli.demo

test: setup
	$(UV) run --frozen pytest $(PYTEST_ARGS)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(UV) run --frozen python $$b || exit 1; done
