"""ImageNet's per-channel pixel mean and std (RGB, pixels in [0, 1]).

The shipped preprocessing presets normalise frames with them (so they are written into every
exported model's spec), and VideoMAE's pre-training targets undo that normalisation: one definition.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
