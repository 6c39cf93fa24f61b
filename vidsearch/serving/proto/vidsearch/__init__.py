"""Generated protobuf package `vidsearch` (see `tools/codegen.py`)."""
