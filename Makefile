# The two commands of the README:
#   make serve   set up (venv, llama.cpp build, bundled model) and run the server on 127.0.0.1:8000
#   make test    set up and run the whole suite: ruff, mypy, pytest (real SQLite, PostgreSQL, Redis, model)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup serve test lint typecheck pytest browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# everything: the server with all providers and backends, plus the dev tools
$(STAMP): pyproject.toml | $(BIN)/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/tokenrelay serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: setup
	$(BIN)/mypy

browser:
	bash scripts/install-browser.sh

pytest: setup browser
	$(BIN)/python -m pytest

test: lint typecheck pytest

# the relay comparison (tokenrelay vs naive FastAPI vs sse-starlette vs a bare asyncio floor),
# well under 10 minutes; writes docs/benchmarks.md and docs/img/relay-p99-gap.png
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.relay.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
