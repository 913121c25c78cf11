"""Shared test helpers: paths to real photos and tiny image makers."""

import os
import shutil

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
VAL = os.path.join(SHARED, "val")
CORPUS = os.path.join(SHARED, "corpus")
EXAMPLES = os.path.join(ROOT, "examples")
# CI sets this: there a missing ../shared fails the tests that need it instead of skipping them.
REQUIRE_DATA = os.environ.get("TINCT_REQUIRE_DATA") == "1"


def _skips(folder):
    """A test needing `folder` skips when it is not beside this checkout, except under CI's flag."""
    return not REQUIRE_DATA and not os.path.isdir(folder)


def need_data(folder):
    """Skip the calling test when `folder` (../shared/val or corpus) is not beside this checkout,
    so a bare clone still runs everything else; under TINCT_REQUIRE_DATA=1 (CI) do not skip."""
    if _skips(folder):
        pytest.skip("%s is not here (the photos beside the checkout)" % os.path.relpath(folder, ROOT))
    return folder


needs_val = pytest.mark.skipif(_skips(VAL), reason="../shared/val is not here")


def copy_corpus(dest, count):
    """The first `count` corpus photos copied into `dest` (a tiny training set); returns dest as str."""
    for name in sorted(os.listdir(need_data(CORPUS)))[:count]:
        shutil.copy(os.path.join(CORPUS, name), str(dest))
    return str(dest)


def val_photo(name="kodak_kodim23.png"):
    """A real color photo from the validation set (for evaluation-style checks only)."""
    from engine.imageio import load_image

    return load_image(os.path.join(need_data(VAL), name))


def to_gray_rgb(rgb):
    """The photo as a black-and-white RGB image (its own L, no chroma)."""
    from engine.color import lab_to_srgb_int, rgb_to_l

    l = rgb_to_l(rgb)
    return lab_to_srgb_int(l, np.zeros(l.shape + (2,), np.float32))
