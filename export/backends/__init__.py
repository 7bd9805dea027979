"""Python-backend runners copied into cpu-profile model versions as model.py.

They run inside Triton's stub with the model environment (.venv-triton: numpy<2, onnxruntime,
xgboost), never the app environment, so they import nothing from this project.
"""
