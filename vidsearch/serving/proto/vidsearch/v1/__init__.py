"""Generated stubs of `vidsearch.v1` (`python -m tools.codegen` regenerates them)."""
