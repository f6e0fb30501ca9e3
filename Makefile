# Two entry points that do all set-up on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install serve test test-backends lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/contentlib serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite, once per backend pair that matters: SQLite + local disk (the embedded default), then
# PostgreSQL + S3 (SeaweedFS), each started for the run if it is not already running.
TEST_PG ?= postgresql://postgres@127.0.0.1:5432
TEST_S3 ?= http://127.0.0.1:8333

test: lint
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/with-services.sh $(MAKE) --no-print-directory test-backends

# Both passes; PostgreSQL and S3 are up (the backend-suite and replica tests use them in the first pass too). The
# full-disk tests fill a local tmpfs: they belong to the first pass only. The CLI client's and the web UI's tests
# (clients of /api, whose every operation the second pass runs on PostgreSQL + S3) run in the first pass only too.
SECOND_PASS_IGNORE := test_store_backends.py test_replicas.py test_full_disk.py \
	test_cli.py test_cli_transfer.py test_ui.py test_ui_static.py

test-backends:
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
	CONTENTLIB_TEST_PG=$(TEST_PG) CONTENTLIB_TEST_S3=$(TEST_S3) $(BIN)/python -m pytest -n 2 --dist loadgroup \
		$(addprefix --ignore tests/,$(SECOND_PASS_IGNORE)) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

# The crash harness with 100 SIGKILLs per backend pair (SQLite + disk, PostgreSQL + S3), then the long fuzzing run.
soak: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/with-services.sh $(BIN)/python bench/soak.py $(ARGS)

clean:
	rm -rf $(VENV) contentlib-data .pytest_cache .mypy_cache .ruff_cache
