# Two images from one file. Build from the repository root:
#   docker build -f docker/orchestrator.Dockerfile --target api -t trading-ml-orchestrator .
#   docker build -f docker/orchestrator.Dockerfile --target worker -t trading-ml-worker .
# `api` installs the project without the `training` extra: no torch, onnx, onnxruntime, xgboost or
# scikit-learn (tests/test_packaging.py checks the lock). `worker` adds that extra for
# walk-forward jobs, which retrain models. `dashboard-assets` only builds the chart library that
# `api` serves at /dashboard.

# The dashboard's chart library (lightweight-charts) from npm, as `make dashboard-assets` installs it.
FROM node:20.18.1-bookworm-slim AS dashboard-assets
WORKDIR /build
COPY orchestrator/dashboard/package.json orchestrator/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.12.8-slim-bookworm AS api
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY orchestrator ./orchestrator
COPY --from=dashboard-assets \
    /build/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js \
    ./orchestrator/dashboard/static/vendor/
COPY export ./export
# /feature-states: where compose mounts the API's snapshot volume; owned here, so that a new
# named volume takes this owner and the API (uid 10001) can write its snapshot into it.
RUN uv sync --frozen --no-dev \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /app app \
    && install -d -o 10001 -g 10001 /feature-states
USER 10001:10001
EXPOSE 8080
# Liveness only (/health answers 200 while the process runs); readiness is /health/ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["/app/.venv/bin/python", "-m", "orchestrator", "serve"]

FROM api AS worker
USER 0
RUN uv sync --frozen --no-dev --extra training
USER 10001:10001
# A worker serves no HTTP: its liveness is the MySQL heartbeat of the run it holds.
HEALTHCHECK NONE
CMD ["/app/.venv/bin/python", "-m", "orchestrator", "worker"]
