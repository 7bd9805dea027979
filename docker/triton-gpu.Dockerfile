# Triton with the gpu profile (onnxruntime_onnx, pytorch_libtorch, fil backends). Build from the
# repository root after `make models`:
#   docker build -f docker/triton-gpu.Dockerfile -t trading-ml-triton-gpu .
# Run with the NVIDIA container toolkit: docker run --gpus all -p 8000-8002:8000-8002 ...
# The backends the gpu profile may use are the ones this release ships (tests/deploy checks it).
FROM nvcr.io/nvidia/tritonserver:24.08-py3
# Owned by the orchestrator images' uid (10001): in docker/compose*.yaml /models is the `models`
# volume, filled from this image on first start, where the API and the workers install and pin
# retrained versions (docs/deploy.md).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /models app
COPY --chown=10001:10001 model_repository/gpu /models/gpu
USER 10001:10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
CMD ["tritonserver", "--model-repository=/models/gpu", "--model-control-mode=explicit", \
     "--load-model=*", "--strict-readiness=true"]
