"""The Triton Python-backend model that serves an exported ONNX model with ONNX Runtime on the CPU.

`model.py` is copied into every `--target cpu` version directory. It runs inside the Triton server's
own Python environment, which has numpy, onnxruntime and Triton's `triton_python_backend_utils` but
not vidsearch, so it imports nothing from vidsearch.
"""
