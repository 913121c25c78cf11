"""Shared test helpers: paths to real photos and tiny image makers."""

import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
VAL = os.path.join(SHARED, "val")
CORPUS = os.path.join(SHARED, "corpus")
EXAMPLES = os.path.join(ROOT, "examples")


def val_photo(name="kodak_kodim23.png"):
    """A real color photo from the validation set (for evaluation-style checks only)."""
    from engine.imageio import load_image

    return load_image(os.path.join(VAL, name))


def to_gray_rgb(rgb):
    """The photo as a black-and-white RGB image (its own L, no chroma)."""
    from engine.color import lab_to_srgb_int, rgb_to_l

    l = rgb_to_l(rgb)
    return lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))
