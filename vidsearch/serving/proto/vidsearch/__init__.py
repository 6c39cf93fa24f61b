"""Generated protobuf package `vidsearch` (see `vidsearch.serving.codegen`)."""
