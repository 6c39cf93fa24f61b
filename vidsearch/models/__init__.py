"""Models (ViCLIP, InternVideo2, VideoMAE V2), the CLIP and WordPiece tokenizers, presets, checkpoints.

Pure PyTorch: nothing here knows of serving, indexes or jobs. Names are imported on first use, so
`vidsearch.models.tokenizer` stays usable by light clients without loading torch.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "detect_family": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_state_dict": "checkpoint",
    "FAMILIES": "factory",
    "ModelFamily": "factory",
    "Preset": "factory",
    "create_model": "factory",
    "get_preset": "factory",
    "list_presets": "factory",
    "InternVideo2": "internvideo2",
    "InternVideo2Config": "internvideo2",
    "Tokenizer": "tokenizer",
    "get_tokenizer": "tokenizer",
    "ViCLIP": "viclip",
    "ViCLIPConfig": "viclip",
    "VideoMAEv2": "videomae",
    "VideoMAEv2Config": "videomae",
    "VideoMAEv2Pretrain": "videomae",
    "WordPieceTokenizer": "wordpiece",
}

__all__ = [
    "FAMILIES",
    "InternVideo2",
    "InternVideo2Config",
    "ModelFamily",
    "Preset",
    "Tokenizer",
    "ViCLIP",
    "ViCLIPConfig",
    "VideoMAEv2",
    "VideoMAEv2Config",
    "VideoMAEv2Pretrain",
    "WordPieceTokenizer",
    "create_model",
    "detect_family",
    "get_preset",
    "get_tokenizer",
    "list_presets",
    "load_checkpoint",
    "read_state_dict",
]

if TYPE_CHECKING:
    from vidsearch.models.checkpoint import detect_family, load_checkpoint, read_state_dict
    from vidsearch.models.factory import FAMILIES, ModelFamily, Preset, create_model, get_preset, list_presets
    from vidsearch.models.internvideo2 import InternVideo2, InternVideo2Config
    from vidsearch.models.tokenizer import Tokenizer, get_tokenizer
    from vidsearch.models.viclip import ViCLIP, ViCLIPConfig
    from vidsearch.models.videomae import VideoMAEv2, VideoMAEv2Config, VideoMAEv2Pretrain
    from vidsearch.models.wordpiece import WordPieceTokenizer


__getattr__ = lazy_exports(__name__, _EXPORTS)
