# Triton with the cpu profile (Python backend: onnxruntime and xgboost inside the stub, numpy < 2),
# for machines without a GPU. Build from the repository root after `make models`:
#   docker build -f docker/triton-cpu.Dockerfile -t trading-ml-triton-cpu .
# Same pinned NGC release as the gpu image; its Python backend stub gets the locked model
# environment (requirements/triton-model-env.txt). Not built here (no Docker engine).
FROM nvcr.io/nvidia/tritonserver:24.08-py3
COPY requirements/triton-model-env.txt /tmp/triton-model-env.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/triton-model-env.txt && rm /tmp/triton-model-env.txt
# The cpu profile's runners are Python-based backends, installed once beside backends/python
# (a config names one with backend: "<runner>"; the versions hold only artifacts).
COPY model_repository/backends/ /opt/tritonserver/backends/
# Owned by the orchestrator images' uid (10001): in docker/compose*.yaml /models is the `models`
# volume, filled from this image on first start, where the API and the workers install and pin
# retrained versions (docs/deploy.md).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /models app
COPY --chown=10001:10001 model_repository/cpu /models/cpu
USER 10001:10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
CMD ["tritonserver", "--model-repository=/models/cpu", "--model-control-mode=explicit", \
     "--load-model=*", "--strict-readiness=true"]
