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
# A WordPiece vocabulary of our own: BERT's specials first ([PAD] = 0), then a few words and pieces.
TINY_WORDPIECE_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "dog", "cat", "red", "car", "man", "is",
    "on", "in", "running", "street", "park", "play", "##ing", "##s", "jump", "ball", "blue", "sky", ".",
    ",", "!", "fri", "##sbee", "bi", "##cycle", "sun", "##set",
]  # fmt: skip
TINY_INTERNVIDEO2 = {
    "embed_dim": 16, "image_size": 28, "patch_size": 14, "num_frames": 4, "vision_width": 32,
    "vision_layers": 2, "vision_heads": 4, "mlp_hidden_dim": 48, "mlp_gelu": "tanh", "image_pos_embed": True,
    "clip_embed_dim": 24, "pool_heads": 2, "vocab_size": len(TINY_WORDPIECE_VOCAB), "context_length": 12,
    "max_positions": 16, "type_vocab_size": 2, "text_width": 32, "fusion_layer": 2, "text_heads": 4,
    "text_mlp_dim": 64,
}  # fmt: skip
