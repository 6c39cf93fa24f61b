"""Training checkpoints: everything an exact resume needs, written atomically.

A checkpoint holds the model, optimiser, scheduler and gradient-scaler states, the step reached,
the random-number states of every process (torch CPU and CUDA, NumPy, Python) and the recipe it was
trained with. It is written atomically (`vidsearch.formats.atomic`), so a crash
while saving leaves the previous checkpoint intact; it is read back with `weights_only=True`.
"""

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidsearch.errors import CheckpointError
from vidsearch.formats.atomic import atomic_path

LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    """This process's random-number states, in types `torch.load(weights_only=True)` accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    version, python_state, next_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            name,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(position),
            int(has_gauss),
            float(gauss),
        ],
        "python": [version, list(python_state), next_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, python_state, next_gauss = state["python"]
    random.setstate((version, tuple(python_state), next_gauss))


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint written by `save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such training checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({err})") from err
    missing = {"model", "optimizer", "scheduler", "step", "rng", "recipe"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: not a vidsearch training checkpoint (missing {sorted(missing)})")
    return dict(state)
