# The two commands of the README: `make run` (everything with the demo tasks, on an embedded
# Redis when no REDIS_URL is set) and `make test` (the whole suite; .ci/run calls exactly this).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := dev,hiredis,web,cron,embedded

.PHONY: run test test-embedded test-fast lint system-deps bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

venv: $(BIN)/.installed

# Debian packages the tests drive (redis-server, siege, chromium); installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

run: venv
	$(BIN)/redisq up --demo

test: venv system-deps
	$(BIN)/ruff check redisq webapp tests bench scripts worker.py
	$(BIN)/lint-imports
	$(BIN)/mypy --strict redisq
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# The suite on the `embedded` extra's server (Valkey 8.1, no TLS: tests/support/tls.py fronts it)
# instead of the redis-server on PATH, as on a machine that has only that one.
test-embedded: venv system-deps
	REDISQ_TEST_SERVER=embedded $(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: venv
	$(BIN)/python -m pytest -q tests/unit

bench: venv
	$(BIN)/python bench/core_bench.py

clean:
	rm -rf $(VENV) .redisq *.egg-info
