"""What callers may know of the models a runtime serves: facts, not the repository's layout.

Names, versions and the weights' checksum (what an index records), output widths, preprocessing
specs and batch limits; never paths, tensor names or file formats, which stay with the runtime.
"""

from dataclasses import dataclass

from vidsearch.video.preprocess import Preprocess


@dataclass(frozen=True)
class ModelFacts:
    """One served model, as callers may know it."""

    name: str  # as indexes record it: the model's preset
    version: str  # the version served
    checksum: str  # "sha256:<checkpoint sha256>": vectors of two checkpoints never share an index
    width: int  # values per output row: the embedding dimension, or the classifier's number of classes
    batch: int  # the most inputs one model run takes: the batch size for callers that gather inputs
    preprocess: Preprocess | None  # how its input clips are made (None for the text tower)


@dataclass(frozen=True)
class RuntimeFacts:
    """The models a runtime serves; any may be missing (a text-only repository still answers Search)."""

    text: ModelFacts | None
    vision: ModelFacts | None
    classifier: ModelFacts | None
    text_batch: int  # the most texts one text-tower run takes (0 without a text model)

    @property
    def primary(self) -> ModelFacts:
        model = self.text or self.vision or self.classifier
        assert model is not None  # a runtime never opens an empty repository
        return model

    @property
    def model_name(self) -> str:
        """The embedding model's name, as indexes record it."""
        return self.primary.name

    @property
    def model_checksum(self) -> str:
        return self.primary.checksum

    @property
    def dim(self) -> int:
        """Embedding dimension of the ViCLIP towers (0 when the runtime has neither)."""
        tower = self.text or self.vision
        return tower.width if tower else 0


@dataclass(frozen=True)
class RuntimeChoice:
    """Which runtime serves the models, where, in which precision, and why it was chosen (logged at start,
    reported by GetIndexStats): with `--runtime auto` and `gpu = "auto"` the answer depends on the machine."""

    runtime: str  # "embedded", "torch", "triton"
    device: str  # "cpu", "cuda:0", or the Triton server's address
    dtype: str  # "float32", "float16", "bfloat16" ("" where the server decides)
    reason: str

    def describe(self) -> str:
        precision = f", {self.dtype}" if self.dtype else ""
        return f"{self.runtime} on {self.device}{precision}: {self.reason}"
