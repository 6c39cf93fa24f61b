"""The demo's corpus: synthetic moving-shapes videos the demo model never saw, as H.264 files.

Scenes come from the training package's generator (`vidsearch.training.synthetic`) with a seed the
demo model was not trained on (it trained on seed 0), so every scene is new to it; several scenes
are joined into one video, so that hits have timestamps inside their videos. The ground truth (the
canonical caption of every scene) is written beside the videos for the demo to check its hits.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidsearch.training.synthetic import SynthSpec, plan, scene_frames, write_mp4

CORPUS_FILE = "corpus.json"


@dataclass(frozen=True)
class CorpusSpec:
    videos: int = 12
    scenes_per_video: int = 6
    seed: int = 2026  # not 0, the seed of the demo model's training set
    size: int = 128  # as the training set: 128² frames, 20 frames at 10 fps per scene
    frames: int = 20
    fps: int = 10

    @property
    def scene_s(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class Scene:
    video: str  # file name under the corpus folder
    start_s: float
    end_s: float
    caption: str  # canonical caption: colour, shape, motion


def make_corpus(folder: Path, spec: CorpusSpec) -> list[Scene]:
    """Write the corpus into `folder` (kept when it exists for the same spec); returns its scenes."""
    index = folder / CORPUS_FILE
    if index.is_file():
        saved = json.loads(index.read_text())
        if saved["spec"] == asdict(spec):
            return [Scene(**scene) for scene in saved["scenes"]]
    folder.mkdir(parents=True, exist_ok=True)
    per_video = spec.scenes_per_video
    synth = SynthSpec(n=spec.videos * per_video, seed=spec.seed, test_fraction=0.25, size=spec.size,
                      frames=spec.frames, fps=spec.fps)
    planned = plan(synth)
    order = np.random.default_rng(spec.seed).permutation(len(planned))
    scenes = []
    for number in range(spec.videos):
        name = f"demo-{number:02d}.mp4"
        picked = [planned[int(i)] for i in order[number * per_video : (number + 1) * per_video]]
        write_mp4(folder / name, np.concatenate([scene_frames(synth, item) for item in picked]), spec.fps, 20)
        scenes += [Scene(name, k * spec.scene_s, (k + 1) * spec.scene_s, item.combo.caption())
                   for k, item in enumerate(picked)]
    index.write_text(json.dumps({"spec": asdict(spec), "scenes": [asdict(s) for s in scenes]}, indent=1))
    return scenes
