# The orchestrator API (and, until the dependency split lands, the job worker: the same image runs
# `python -m orchestrator worker`). Build from the repository root:
#   docker build -f docker/orchestrator.Dockerfile -t trading-ml-orchestrator .
# Known gap (issue 14): this image still installs the whole lock, training stack (torch) included.
FROM python:3.12.8-slim-bookworm
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY orchestrator ./orchestrator
COPY export ./export
RUN uv sync --frozen --no-dev \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /app app
USER 10001:10001
EXPOSE 8080
# Liveness only (/health answers 200 while the process runs); readiness is /health/ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
CMD ["/app/.venv/bin/python", "-m", "orchestrator", "serve"]
