# The orchestrator API. Build from the repository root:
#   docker build -f docker/orchestrator.Dockerfile -t trading-ml-orchestrator .
FROM python:3.12-slim
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY orchestrator ./orchestrator
COPY export ./export
RUN uv sync --frozen --no-dev
EXPOSE 8080
CMD ["/app/.venv/bin/python", "-m", "orchestrator", "serve"]
