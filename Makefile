# The two set-up commands of the README are `make demo` and `make test`; both install what is
# missing first (scripts/bootstrap.sh).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint bootstrap bench clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@$(BIN)/tablewatch demo

# What CI runs (.ci/run): lint, types, the whole test suite.
test: bootstrap lint
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

check: test

bench:
	@scripts/bootstrap.sh bench
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/detection_bench.py
	$(BIN)/python bench/dashboard_bench.py
	$(BIN)/python bench/alerts_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/bounds_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
