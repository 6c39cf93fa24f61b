# `make demo` and `make test` do all the set-up themselves, into .venv at the repository root.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup test lint typecheck unit demo clean triton-env gpu-lock gpu-bundle gpu-check browser

setup: $(STAMP)

# Torch first, by exact version: the CPU wheel on disk satisfies it, so no resolver reaches for CUDA.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check vidsearch tests benchmarks tools

typecheck: setup
	$(VENV)/bin/mypy

unit: setup triton-env browser
	$(VENV)/bin/pytest -q

# The Triton server of the export tests: the tritonserver bundled in nvidia-pytriton, with the
# Python backend. PyTriton needs numpy < 2, so it gets its own environment (and onnxruntime, which
# the exported Python-backend models run inside the server; PyAV and this vidsearch, without its
# dependencies, for `video_preprocess`, which decodes on the server with vidsearch's own PyAV path).
TRITON_VENV  := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-stamp

triton-env: $(TRITON_STAMP)

$(TRITON_STAMP): pyproject.toml
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --quiet --disable-pip-version-check \
		"nvidia-pytriton==0.7.0" "numpy>=1.26,<2" "onnxruntime>=1.20" "av==18.1.0"
	$(TRITON_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(TRITON_STAMP)

# The web page's tests drive Debian's chromium through its chromedriver (never a downloaded browser).
# Installed once, as root (CI is); `apt-get update` first, since a fresh machine's lists may be empty.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			chromium chromium-driver; }

test: lint typecheck unit

demo: setup
	$(VENV)/bin/vidsearch demo $(DEMO_ARGS)

# The GPU check kit (see docs/gpu.md): an offline bundle of wheels for a CUDA PyTorch machine, and the
# check that installs it beside that PyTorch and runs the GPU tests and report there.
GPU_PYTHON ?= 3.12
GPU_CUDA   ?= 13
BUNDLE     ?= dist/gpu-bundle

gpu-lock: setup
	$(PY) tools/gpu/bundle.py lock --python $(GPU_PYTHON) --cuda $(GPU_CUDA)

gpu-bundle: setup
	$(PY) tools/gpu/bundle.py build --python $(GPU_PYTHON) --cuda $(GPU_CUDA) --out $(BUNDLE) $(BUNDLE_ARGS)

# On the GPU machine, with its own Python (no .venv there): make gpu-check BUNDLE=dist/gpu-bundle
gpu-check:
	$(PYTHON) tools/gpu/check.py --bundle $(BUNDLE) $(CHECK_ARGS)

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache .mypy_cache .ruff_cache
