# The two commands of the README:
#   make serve   set up (venv, llama.cpp build, bundled model) and run the server on 127.0.0.1:8000
#   make test    set up and run the whole suite: ruff, mypy, pytest (real SQLite, PostgreSQL, Redis, model),
#                then the server-internals tests against the newest uvicorn/Starlette/FastAPI (test-newest)
# Set-up installs exactly the versions in requirements/lock.txt (hash-checked), then the project
# itself without resolving anything: a fresh clone on a fresh machine gets the tested versions.
# `make lock` re-resolves after pyproject.toml changes; `make lock-upgrade` moves pins forward.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
# llama.cpp for any x86-64-v3 machine (AVX2/FMA), not -march=native: a virtual machine may
# advertise AMX or AVX-512 that its hypervisor does not enable, and a native build then dies
# of SIGILL in the first decode (seen on an Intel Xeon VM with AMX in /proc/cpuinfo).
# Set CMAKE_ARGS yourself to build for your own hardware.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: setup serve test lint typecheck pytest test-newest browser nginx js bench lock lock-upgrade lock-tidy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# everything: the server with all providers and backends, the dev tools and the benchmark's
# extras, at the locked versions (llama-cpp-python builds from source with CMAKE_ARGS above);
# then the project, editable and --no-deps; pip check fails when pyproject.toml asks for a
# dependency that the lock lacks (run `make lock`)
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
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

# the JavaScript clients the suite drives (the AI SDK, openai-node, the Agents SDK), exactly
# as tests/js/package-lock.json pins them; Node.js and npm come from the machine
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package-lock.json tests/js/package.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js: $(JS_STAMP)

pytest: setup browser nginx js
	$(BIN)/python -m pytest

test: lint typecheck pytest
	$(MAKE) test-newest

# The tests that lean on uvicorn's and Starlette's internals (the direct write to uvicorn's
# transport, the greedy listener, the draining server, the middleware chain we build from
# FastAPI's list) against the newest releases of the server stack, in a throwaway venv: an
# upgrade that breaks the direct path fails here before users meet it. Everything else in that
# venv comes from the lock (no llama.cpp build: these tests use the scripted provider; redis and
# asyncpg are for the replica-failover test).
NEWEST_VENV  := .venv-newest
NEWEST       := fastapi starlette 'uvicorn[standard]' httptools uvloop
NEWEST_TESTS := tests/test_direct_write.py tests/test_listener.py tests/test_serve_gc.py \
                tests/test_front_route.py tests/test_stream_mechanics.py tests/test_crash_recovery.py

$(NEWEST_VENV)/.installed: $(LOCK) pyproject.toml Makefile
	rm -rf $(NEWEST_VENV)
	$(PYTHON) -m venv $(NEWEST_VENV)
	grep -o -E '^[A-Za-z0-9][A-Za-z0-9._-]*==[^ \\]+' $(LOCK) > $(NEWEST_VENV)/constraints.txt
	$(NEWEST_VENV)/bin/python -m pip install --quiet -c $(NEWEST_VENV)/constraints.txt \
	  -e . redis asyncpg pytest pytest-asyncio pytest-timeout
	touch $@

test-newest: $(NEWEST_VENV)/.installed
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade $(NEWEST)
	$(NEWEST_VENV)/bin/python -m pip check
	@echo "test-newest: $$($(NEWEST_VENV)/bin/python -m pip freeze | grep -i -E '^(fastapi|starlette|uvicorn|httptools|uvloop)==' | tr '\n' ' ')"
	$(NEWEST_VENV)/bin/python -m pytest -p no:cacheprovider -q $(NEWEST_TESTS)

# the relay comparison (tokenrelay vs naive FastAPI vs sse-starlette vs a bare asyncio floor),
# well under 10 minutes; writes docs/benchmarks.md and docs/img/relay-p99-gap.png
bench: setup
	$(BIN)/python -m bench.relay.run

# The lock: every distribution of the dev and bench extras (dev includes all), pinned with
# hashes, for CPython 3.11 on Linux x86-64. `make lock` after editing pyproject.toml keeps every
# pin it can; `make lock-upgrade` takes the newest releases the ranges allow, or only
# PACKAGE's with `make lock-upgrade PACKAGE=uvicorn`. Then `make test` and commit the lock.
LOCK_VENV   := .venv-lock
PIP_TOOLS   := pip-tools==7.7.0
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet \
  --extra dev --extra bench --generate-hashes --strip-extras --unsafe-package tokenrelay \
  --no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(PIP_TOOLS)

lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE)
	@$(MAKE) --no-print-directory lock-tidy

lock-upgrade: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade)
	@$(MAKE) --no-print-directory lock-tidy

# the project itself is no pin (it is installed editable, --no-deps): drop pip-compile's note on it
lock-tidy:
	sed -i -e '/^# WARNING: The following packages were not pinned/,$$d' $(LOCK)
	sed -i -e '$${/^$$/d}' $(LOCK)

clean:
	rm -rf $(VENV) $(NEWEST_VENV) $(LOCK_VENV) .mypy_cache .ruff_cache .pytest_cache
