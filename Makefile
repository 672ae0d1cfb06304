# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test soak lint format schema bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/coverproof serve

test: $(STAMP)
	scripts/ensure-redis
	$(BIN)/python -m pytest

# The reliability tests at their large sizes (tests/reliability; `make test` runs them small).
soak: $(STAMP)
	scripts/ensure-redis
	COVERPROOF_SOAK=1 $(BIN)/python -m pytest tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.run

schema: $(STAMP)
	$(BIN)/coverproof export-schema

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
