# syntax=docker/dockerfile:1
# otel-leakproc container image.
#
# Build (scripts/build-image.sh does all of this):
#   pip wheel . --wheel-dir build/image/wheels      # the package and its dependencies, built on the host
#   podman build --pull=never --format docker -t otel-leakproc:dev .
# The build needs no network: Python packages come only from build/image/wheels.
#
# Base: a Debian 12 image with python3 and python3-venv. scripts/build-base-image.sh makes
# localhost/debian-python:bookworm with debootstrap; where a registry is reachable,
# --build-arg BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm works as well.
#
# Run:
#   podman run --read-only -p 4040:4040 -p 4317:4317 -v leakproc-state:/var/lib/otel-leakproc otel-leakproc:dev
#
#   Ports      4040/tcp  HTTP: Pyroscope /ingest and push, OTLP/HTTP profiles, /livez, /readyz, /metrics,
#                        /api/v1/series, status page
#              4317/tcp  gRPC: Pyroscope push, OTLP ProfilesService, grpc.health.v1.Health
#   Config     /etc/otel-leakproc/leakproc.yaml (deploy/container/leakproc.yaml: binds 0.0.0.0, state in
#              the volume; mount your own file over it; every key is documented in config/leakproc.yaml)
#   State      /var/lib/otel-leakproc (a volume: series snapshot and event spool; the root filesystem can
#              be read-only)
#   User       uid 10001, gid 10001 (fixed, non-root)
#   Signals    SIGTERM stops intake, drains, saves state and exits within server.shutdown_timeout_seconds

ARG BASE_IMAGE=localhost/debian-python:bookworm

# ---- build stage: a virtualenv with the package, installed offline from host-built wheels ----------
FROM ${BASE_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1

COPY build/image/wheels/ /wheels/

# Wheels only (no sdists: the final image has no compiler and this stage needs none; the package's wheel
# carries its C extension, compiled on the host for CPython 3.11 and Debian 12's C library), then drop pip,
# setuptools and wheel from the virtualenv: nothing installs packages at run time. Importing the serve and
# analyze modules here writes their cached dataclass methods (_dataclass_code.py) beside the bytecode, which
# the read-only root filesystem of the final stage cannot do at run time.
RUN python3 -m venv /opt/otel-leakproc \
 && /opt/otel-leakproc/bin/pip install --find-links /wheels --only-binary=:all: otel-leakproc \
 && /opt/otel-leakproc/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/otel-leakproc/bin/otel-leakproc --version \
 && /opt/otel-leakproc/bin/python -c "import otel_leakproc.cli, otel_leakproc.app, otel_leakproc.analyze"

# ---- final stage ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="otel-leakproc" \
      org.opencontainers.image.description="Finds memory, goroutine and lock-contention leaks in pushed profiles and exports them as OpenTelemetry signals" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/deploy.md" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A fixed, unprivileged user: Kubernetes runAsNonRoot can check the numeric USER below.
RUN groupadd --gid 10001 leakproc \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin leakproc \
 && mkdir -p /var/lib/otel-leakproc /etc/otel-leakproc \
 && chown 10001:10001 /var/lib/otel-leakproc \
 && chmod 0750 /var/lib/otel-leakproc

COPY --from=build /opt/otel-leakproc /opt/otel-leakproc
COPY deploy/container/leakproc.yaml /etc/otel-leakproc/leakproc.yaml

# Bytecode is compiled at install time; nothing is written next to the code at run time (read-only root).
ENV PATH=/opt/otel-leakproc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

USER 10001:10001
WORKDIR /var/lib/otel-leakproc
VOLUME ["/var/lib/otel-leakproc"]
EXPOSE 4040/tcp 4317/tcp

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:4040/livez', timeout=2).status != 200)"]

ENTRYPOINT ["otel-leakproc", "serve"]
CMD ["--config", "/etc/otel-leakproc/leakproc.yaml"]
