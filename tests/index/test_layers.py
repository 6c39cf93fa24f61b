"""The layer rule: the index stands on numpy, FAISS, SQLite and Arrow alone."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("vidsearch.models", "vidsearch.video", "vidsearch.serving", "vidsearch.jobs", "torch")


def test_index_imports_no_higher_layer_and_no_torch() -> None:
    probe = (
        "import sys, vidsearch.index, vidsearch.index.build; "
        f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
