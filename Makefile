# The two commands of the README:
#   make serve   set up (venv, llama.cpp build, bundled model) and run the server on 127.0.0.1:8000
#   make test    set up and run the whole suite: ruff, mypy, pytest (real SQLite, PostgreSQL, Redis, model)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# llama.cpp for any x86-64-v3 machine (AVX2/FMA), not -march=native: a virtual machine may
# advertise AMX or AVX-512 that its hypervisor does not enable, and a native build then dies
# of SIGILL in the first decode (seen on an Intel Xeon VM with AMX in /proc/cpuinfo).
# Set CMAKE_ARGS yourself to build for your own hardware.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: setup serve test lint typecheck pytest browser nginx bench clean

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

# Debian's nginx for tests/e2e/test_nginx.py (the test starts its own, on a free port)
nginx:
	bash scripts/install-nginx.sh

pytest: setup browser nginx
	$(BIN)/python -m pytest

test: lint typecheck pytest

# the relay comparison (tokenrelay vs naive FastAPI vs sse-starlette vs a bare asyncio floor),
# well under 10 minutes; writes docs/benchmarks.md and docs/img/relay-p99-gap.png
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.relay.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
