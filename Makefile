# The two commands of the README: `make serve` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CHDB_STAMP := $(VENV)/.installed-chdb
PORT ?= 8000
DATA_DIR ?= idstitch-data

.PHONY: serve test test-chdb bench install

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

# chdb (about 530 MB) only for the tests that need it, never in the base install.
$(CHDB_STAMP): $(STAMP) requirements-chdb.lock
	$(VENV)/bin/pip install --quiet -r requirements-chdb.lock
	touch $(CHDB_STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/idstitch serve --port $(PORT) --data-dir $(DATA_DIR)

test: $(STAMP)
	scripts/test-deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(MAKE) test-chdb

# The ClickHouse engine's tests, on chdb: a pytest process of their own (chdb hosts one engine per
# process; the main run leaves them out with addopts' -m "not chdb").
# Then the equivalence suite of tests/analytics again, on ClickHouse instead of DuckDB (a third process).
test-chdb: $(CHDB_STAMP)
	$(VENV)/bin/python -m pytest -m chdb $(CHDB_PYTEST_ARGS)
	IDSTITCH_TEST_ANALYTICS=chdb:$$(mktemp -d) $(VENV)/bin/python -m pytest tests/analytics --ignore=tests/analytics/clickhouse $(CHDB_PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/ingest.py
