"""The shipped weights' quality, by evaluation on Kodak24: `tinct eval`'s protocol for the
colorization network, `tinct eval-damage`'s for the damage detector.

Floors sit a little under what the shipped model measured (engine/weights/MODEL_CARD.md), so a
model that got worse, or a pipeline change that broke hints, fails here. They are guards, not
the targets: the model card gives the full table against the targets.
"""

import os

import pytest

from engine.evaluate import run_eval
from engine.evaluate_damage import run_eval_damage
from engine.pipeline import Colorizer
from tests.helpers import VAL, need_data

# Measured on Kodak24 with the shipped model, tinct-lite0 (see the model card), minus about 0.2 dB
# of slack. (The small network it replaced measured +1.11, +2.85 and -0.04.)
AUTO_OVER_GRAY_DB = 0.9  # measured +1.11 (23.14 vs 22.03 dB)
TEN_HINTS_OVER_AUTO_DB = 2.9  # measured +3.12 (26.26 vs 23.14 dB)
TEN_HINTS_OVER_LEVIN_DB = 0.0  # measured +0.23 (26.26 vs 26.03 dB); on all 157 val photos +0.64 (25.73 vs 25.09)

# The damage detector on Kodak24 (engine/weights/MODEL_CARD_DAMAGE.md); Kodak's fine textures
# make it the hardest val subset for it.
DAMAGE_F1 = 0.77  # measured 0.805 (the detectors it replaced: 0.732, 0.465)
DAMAGE_CLEAN_FLAGGED = 0.0025  # measured 0.147 % of a clean photo's pixels (before: 0.300 %, 0.661 %)


@pytest.fixture(scope="module")
def kodak(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kodak24")
    names = sorted(n for n in os.listdir(need_data(VAL)) if n.startswith("kodak_"))
    assert len(names) == 24
    for n in names:
        os.symlink(os.path.join(VAL, n), str(folder / n))
    return str(folder)


@pytest.fixture(scope="module")
def scores(kodak):
    res = run_eval(kodak, (0, 10), methods=("tinct", "gray", "levin"), colorizer=Colorizer(), progress=False)
    return res["methods"]


def test_automatic_colors_beat_gray(scores):
    assert scores["tinct"][0] >= scores["gray"][0] + AUTO_OVER_GRAY_DB, scores


def test_ten_hints_improve_on_automatic(scores):
    assert scores["tinct"][10] >= scores["tinct"][0] + TEN_HINTS_OVER_AUTO_DB, scores


def test_ten_hints_keep_up_with_levin_s_propagation(scores):
    assert scores["tinct"][10] >= scores["levin"][10] + TEN_HINTS_OVER_LEVIN_DB, scores


def test_the_damage_detector_finds_damage_and_leaves_clean_photos_alone(kodak):
    r = run_eval_damage(kodak, restore=False, progress=False)
    print(r["mask"], r["flagged"])
    assert r["mask"]["f1"] >= DAMAGE_F1 and r["flagged"]["clean"] <= DAMAGE_CLEAN_FLAGGED, (r["mask"], r["flagged"])
