"""Generated stubs of `vidsearch.v1` (`python -m vidsearch.serving.codegen` regenerates them)."""
