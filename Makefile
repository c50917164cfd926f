# Two commands: `make run` (serve on SQLite with demo data) and `make test` (the whole suite,
# SQLite and a real PostgreSQL). Both set everything up from the lock file first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export UV_PYTHON_DOWNLOADS := never

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run test lint format fuzz bench clean

$(BIN)/timebank: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(BIN)/timebank

setup: $(BIN)/timebank

run: setup
	$(BIN)/timebank serve --demo --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check timebank tests alembic
	$(BIN)/mypy timebank

test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider

format: setup
	$(BIN)/ruff check --fix timebank tests alembic
	$(BIN)/ruff format timebank tests alembic

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache timebank.db timebank.db-wal timebank.db-shm
