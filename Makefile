# otel-leakproc developer commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORPUS ?= ../shared/corpus
EXAMPLE ?= tests/testdata/corpus/steady_leak

.PHONY: help venv run demo demo-incident analyze test test-deps lint typecheck check proto evaluate bench fuzz soak client-venvs clean series long-series

help:
	@echo "make run        start the service on embedded defaults (HTTP :4040, gRPC :4317, console output)"
	@echo "make demo       upload a bundled series of a leaking Go service (real profiles) to the running service"
	@echo "make analyze    analyse the same series offline, no service needed"
	@echo "make demo-incident  the inventory incident end to end: a leaking Go service caught, named, fixed (docs/tutorial.md)"
	@echo "make test       run the test suite"
	@echo "make check      lint + type check + tests (what CI runs)"
	@echo "make evaluate   score the detectors on a labelled corpus (CORPUS=$(CORPUS))"
	@echo "make series     regenerate the labelled Go series in tests/testdata/series (about 10 min; SERIES_ONLY=a,b)"
	@echo "make long-series  240-profile versions of 13 of them in build/long-series (about 5 min; not committed)"
	@echo "make bench      run the benchmarks (prints figures)"
	@echo "make soak       30 minutes of mixed uploads from many tenants, collector stopped for 10 (prints RSS, events)"
	@echo "make fuzz       fuzz every decoder with atheris (FUZZ_RUNS inputs or FUZZ_SECONDS each; prints coverage)"
	@echo "make proto      regenerate the pprof protobuf module from its .proto"

# setup.py builds the C extensions (receiver/decode/_wire.c, processor/_grid_pack.c, state/_columns.c,
# state/_huffman.c, state/_json.c) into src/ with the editable install: a change to them rebuilds them here. It needs a C compiler
# and the Python headers (Debian: gcc python3-dev).
$(VENV)/.installed: pyproject.toml setup.py src/otel_leakproc/receiver/decode/_wire.c src/otel_leakproc/processor/_grid_pack.c \
		src/otel_leakproc/state/_columns.c src/otel_leakproc/state/_huffman.c src/otel_leakproc/state/_json.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/otel-leakproc serve

demo: venv
	$(VENV)/bin/otel-leakproc push --url http://127.0.0.1:4040 --service checkout --instance pod-1 $(EXAMPLE)/heap

analyze: venv
	$(VENV)/bin/otel-leakproc analyze $(EXAMPLE)

# Builds examples/inventory with the venv's Go, runs it, scrapes it with `serve` on examples/inventory/demo.yaml
# (short demo warm-ups), deploys the fix and stops everything it started (DEMO_DIR=DIR keeps the files).
demo-incident: venv
	VENV=$(VENV) bash examples/inventory/demo.sh

# Real pyroscope clients for the end-to-end tests, each in its own venv (their native parts conflict).
CLIENT_VENVS ?= .venv-clients
client-venvs: $(CLIENT_VENVS)/pyroscope-io-1.4.0/.installed $(CLIENT_VENVS)/pyroscope-io-0.8.16/.installed

$(CLIENT_VENVS)/pyroscope-io-%/.installed:
	$(PYTHON) -m venv $(CLIENT_VENVS)/pyroscope-io-$*
	$(CLIENT_VENVS)/pyroscope-io-$*/bin/pip install --quiet pyroscope-io==$*
	touch $@

# What the tests drive for real besides Python packages (tests/toolchain.py finds each where this puts it,
# never elsewhere on PATH, and the session stops at start when one is missing): headless Chromium (status page), Prometheus,
# promtool and Alertmanager (alert rules, the chain), openssl (TLS certificates), installed with apt when
# missing and running as root; the pyroscope clients in their own venvs; and the container image with the
# chart tools (scripts/ci-deploy.sh: podman, debootstrap, the deploy extra; root).
APT_TEST_PACKAGES = chromium fonts-dejavu-core prometheus prometheus-alertmanager openssl redis-server
test-deps: venv client-venvs
	@missing=""; for b in chromium prometheus promtool prometheus-alertmanager openssl redis-server redis-cli; do \
	  [ -x /usr/bin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt)"; \
	    export PATH="$$PATH:/usr/sbin:/sbin" DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && \
	    apt-get install -y -qq --no-install-recommends $(APT_TEST_PACKAGES) >/dev/null; \
	  else echo "make test needs$$missing: apt-get install $(APT_TEST_PACKAGES) (as root)" >&2; exit 1; fi; \
	fi
	# The container image and chart tools (podman, debootstrap, helm-python-sdk, ...) for tests/deploy.
	CI_DEPLOY_BUILD_ONLY=1 VENV=$(VENV) bash scripts/ci-deploy.sh

test: venv test-deps
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck test

# The generated modules are committed; regenerate after editing the .proto (needs grpcio-tools, in dev).
# profile_descriptor.py: profile.proto serialized, from which profile_messages makes the decoder's classes.
proto: venv
	$(PY) -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src src/otel_leakproc/receiver/proto/profile.proto \
		src/otel_leakproc/receiver/proto/push.proto
	$(PY) -c 'from otel_leakproc.receiver.proto import profile_pb2 as p; print("# ruff: noqa: E501\n# Generated by `make proto` from profile_pb2 (profile.proto as a serialized FileDescriptorProto). DO NOT EDIT.\n\"\"\"profile.proto serialized, for `profile_messages`.\"\"\"\n\nSERIALIZED = " + repr(p.DESCRIPTOR.serialized_pb))' \
		> src/otel_leakproc/receiver/proto/profile_descriptor.py

evaluate: venv
	$(PY) -m otel_leakproc.evaluation $(CORPUS)

# The labelled series of tests/testdata/series/ (README there): real runtime/pprof profiles from the
# stdlib-only Go program in tests/testdata/go/seriesgen, one simulated minute per SERIES_TICK_WALL of wall
# time, timestamps rewritten one minute apart. SERIES_ONLY=a,b regenerates some (labels.json is merged).
GO               ?= $(VENV)/bin/go
SERIES_OUT       ?= tests/testdata/series
SERIES_ONLY      ?=
SERIES_JOBS      ?= 3
SERIES_TICK_WALL ?= 1s
series:
	cd tests/testdata/go/seriesgen && GOTOOLCHAIN=local CGO_ENABLED=0 $(abspath $(GO)) run -trimpath . \
		-out $(abspath $(SERIES_OUT)) -only '$(SERIES_ONLY)' -jobs $(SERIES_JOBS) -tick-wall $(SERIES_TICK_WALL)
	PYTHONPATH=src $(PY) scripts/series_observed.py $(SERIES_OUT)

# Long versions of the one-process series (-profiles stretches them; the workloads keep their per-minute
# behaviour) for the long-series study of the coarser far history (benchmarks/long_series_study.py,
# docs/detection.md): every no-leak scenario and the leaks whose heap stays small over 4 hours.
LONG_SERIES_OUT       ?= build/long-series
LONG_SERIES_PROFILES  ?= 240
LONG_SERIES_TICK_WALL ?= 250ms
LONG_SERIES_ONLY      ?= periodic_full_flush,periodic_flush_gogc400,cache_fill_decelerating,cache_fill_slow,\
churn_only_gogc400,small_object_leak,trickle_leak,bursty_leak,mostly_freed_site_leak,search_index_leak,\
large_object_slow_leak,mostly_freed_small_leak,goroutine_slow_leak
long-series:
	mkdir -p $(LONG_SERIES_OUT)
	cd tests/testdata/go/seriesgen && GOTOOLCHAIN=local CGO_ENABLED=0 $(abspath $(GO)) run -trimpath . \
		-out $(abspath $(LONG_SERIES_OUT)) -only '$(LONG_SERIES_ONLY)' -profiles $(LONG_SERIES_PROFILES) \
		-jobs $(SERIES_JOBS) -tick-wall $(LONG_SERIES_TICK_WALL)

bench: venv
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	bash benchmarks/make_profiles.sh
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_analyze_vs_pprof.py
	@if command -v wrk >/dev/null; then \
		$(PY) benchmarks/bench_serve_wrk.py --kind small && \
		$(PY) benchmarks/bench_serve_wrk.py --kind large --connections 8; \
	else echo "wrk not installed (apt-get install wrk): serve throughput skipped"; fi

# A soak run (benchmarks/soak.py): memory flat after warm-up, every event delivered once across a collector
# outage, every non-200 by reason. SOAK_ARGS="--minutes 3 --outage-minutes 1" for a short run.
SOAK_ARGS ?=
soak: venv
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

# Coverage-guided fuzzing of each decoder (tests/fuzz/fuzz.py), seeded with the real test data. Each target
# runs FUZZ_RUNS inputs or FUZZ_SECONDS, whichever ends first, keeping its corpus in build/fuzz/<target>;
# a crash input lands in tests/fuzz/crashes/<target>/ (commit it with the fix: CI replays it).
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 180
FUZZ_TARGETS ?= pprof goroutine_text go_text otlp_proto otlp_json push ingest_name
fuzz: venv
	$(PY) -m pip install --quiet -e '.[fuzz]'
	@mkdir -p build/fuzz; for t in $(FUZZ_TARGETS); do \
	  $(PY) tests/fuzz/fuzz.py $$t --runs $(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) > build/fuzz/$$t.log 2>&1; \
	  status=$$?; \
	  echo "$$t: $$(grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz/$$t.log | tail -1)"; \
	  if [ $$status -ne 0 ]; then tail -40 build/fuzz/$$t.log; echo "$$t: crash kept in tests/fuzz/crashes/$$t/"; exit $$status; fi; \
	done

clean:
	rm -rf $(VENV) $(CLIENT_VENVS) build dist .pytest_cache .mypy_cache .ruff_cache benchmarks/out otel-leakproc-state
