# Two commands: `make run` (serve on SQLite with demo data) and `make test` (the whole suite,
# SQLite and a real PostgreSQL). Both set everything up from the lock file first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export UV_PYTHON_DOWNLOADS := never

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run test test-ha lint format fuzz bench clean

$(BIN)/timebank: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(BIN)/timebank

setup: $(BIN)/timebank

run: setup
	$(BIN)/timebank serve --demo --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check timebank tests alembic benchmarks
	$(BIN)/mypy timebank

# The suite runs in parallel, one pytest worker a core (each starts its own throwaway
# PostgreSQL cluster; a test file stays on one worker, so its module fixtures start once).
# TEST_WORKERS=0 runs it in one process. The replication and failover tests (marker `ha`)
# run afterwards on their own: their timings (a leader elected, a standby promoted) must not
# compete with the rest of the suite for the cores.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not ha"
	$(BIN)/pytest -q -p no:cacheprovider -m ha

# Only the high-availability tests (`make test` runs them too): the Patroni failover under
# load, manual promotion on a multi-host URL, reports from a replica, the pools' recovery.
# Needs PostgreSQL 15 and etcd (Debian: postgresql, etcd-server); run as root or postgres.
test-ha: setup
	$(BIN)/pytest tests/test_failover.py tests/test_replication.py tests/test_pools.py tests/test_compose.py -q -p no:cacheprovider -s

# A deeper fuzz of every operation against the OpenAPI document (both engines); `make test`
# runs the same with a small budget. FUZZ_EXAMPLES=1000 make fuzz for a longer search.
FUZZ_EXAMPLES ?= 200
fuzz: setup
	TIMEBANK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/test_fuzz.py -q -p no:cacheprovider

format: setup
	$(BIN)/ruff check --fix timebank tests alembic benchmarks
	$(BIN)/ruff format timebank tests alembic benchmarks

# The SPEC §6 benchmark (never part of `make test`): starts its own durable PostgreSQL,
# servers and load generator, stops them all, prints a table and writes
# benchmarks/results/latest.json. BENCH_QUICK=1 for a small 2-3 minute run; see
# benchmarks/README.md for the other BENCH_* knobs.
bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) benchmarks/.venv-hordak .pytest_cache .mypy_cache .ruff_cache timebank.db timebank.db-wal timebank.db-shm
