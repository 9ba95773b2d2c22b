# otel-leakproc developer commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORPUS ?= ../shared/corpus
EXAMPLE ?= tests/testdata/corpus/steady_leak

.PHONY: help venv run analyze test lint typecheck check proto evaluate bench clean

help:
	@echo "make run        analyse the bundled series of a leaking Go service (real profiles)"
	@echo "make test       run the test suite"
	@echo "make check      lint + type check + tests (what CI runs)"
	@echo "make evaluate   score the detectors on a labelled corpus (CORPUS=$(CORPUS))"
	@echo "make bench      run the benchmarks (prints figures)"
	@echo "make proto      regenerate the pprof protobuf module from its .proto"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/otel-leakproc analyze $(EXAMPLE)

test: venv
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck test

# The generated module is committed; regenerate after editing the .proto (needs grpcio-tools, in dev).
proto: venv
	$(PY) -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src src/otel_leakproc/receiver/proto/profile.proto \
		src/otel_leakproc/receiver/proto/push.proto

evaluate: venv
	$(PY) -m otel_leakproc.evaluation $(CORPUS)

bench: venv
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	bash benchmarks/make_profiles.sh
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_analyze_vs_pprof.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache benchmarks/out
