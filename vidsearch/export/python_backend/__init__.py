"""The Triton Python-backend models of the CPU target, copied as `model.py` into version directories.

`model.py` serves an exported ONNX model with ONNX Runtime; it runs inside the Triton server's own
Python environment (numpy, onnxruntime, Triton's `triton_python_backend_utils`) and imports nothing
from vidsearch. `video_model.py` is `video_preprocess`: it decodes with vidsearch's own PyAV path, so
that environment also needs vidsearch (installed without its dependencies) and PyAV.
"""
