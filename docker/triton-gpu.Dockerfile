# Triton with the gpu profile (onnxruntime_onnx, pytorch_libtorch, fil backends). Build from the
# repository root after `make models`:
#   docker build -f docker/triton-gpu.Dockerfile -t trading-ml-triton-gpu .
# Run with the NVIDIA container toolkit: docker run --gpus all -p 8000-8002:8000-8002 ...
FROM nvcr.io/nvidia/tritonserver:24.08-py3
COPY model_repository/gpu /models
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", \
     "--load-model=*", "--strict-readiness=true"]
