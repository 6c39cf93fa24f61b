"""The layer rule: the service reaches models only through the runtime; the client stays light."""

import json
import subprocess
import sys

HIGHER = ("vidsearch.models", "vidsearch.export", "vidsearch.training", "vidsearch.jobs", "tritonclient")
HEAVY = ("torch", "onnxruntime", "av", "faiss", "vidsearch.models", "vidsearch.video", "vidsearch.runtime")


def _imported(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules with these prefixes that importing `module` loads, in a fresh interpreter."""
    probe = (f"import json, sys, {module}; "
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            check=True)
    return list(json.loads(result.stdout))


def test_the_server_imports_no_model_code_but_the_tokenizers() -> None:
    tokenizers = [f"vidsearch.models.{name}" for name in ("text_tokenizer", "tokenizer", "wordpiece")]
    assert _imported("vidsearch.serving.server", HIGHER) == ["vidsearch.models", *tokenizers]


def test_the_client_needs_neither_models_nor_decoders() -> None:
    assert _imported("vidsearch.client", HEAVY) == []
