"""Model configs small enough that every export, server start and query in the tests takes seconds."""

TINY_VICLIP = {
    "embed_dim": 32, "image_size": 32, "patch_size": 16, "num_frames": 8, "vision_width": 64,
    "vision_layers": 2, "vision_heads": 2, "context_length": 32, "vocab_size": 49408, "text_width": 64,
    "text_layers": 2, "text_heads": 2,
}  # fmt: skip
TINY_VIDEOMAE = {
    "image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2, "width": 64, "depth": 2,
    "heads": 2, "mlp_hidden": 128, "num_classes": 7,
}  # fmt: skip
