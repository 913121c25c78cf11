import os

import numpy as np
from PIL import Image

from engine.color import rgb_to_lab
from engine.evaluate import PATCH, format_table, psnr, run_eval, sample_hints


def test_hint_sampler_is_deterministic_and_reveals_patch_means():
    lab = rgb_to_lab(np.random.default_rng(0).integers(0, 256, (256, 256, 3)).astype(np.uint8))
    a = sample_hints(lab, 10, seed=7)
    b = sample_hints(lab, 10, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    rgba, hint_ab, mask = a
    assert 0 < mask.sum() <= 10 * PATCH * PATCH
    assert np.array_equal(mask, rgba[..., 3] > 0)
    back = rgb_to_lab(rgba[mask][:, :3])[:, 1:]
    assert np.abs(back - hint_ab[mask]).max() < 1.5  # what the user "paints" is the patch's mean color


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    assert abs(psnr(a, a + 1) - 48.13) < 0.01


def test_sweep_table_levin_beats_gray_with_hints(tmp_path):
    for i, (c1, c2) in enumerate([((200, 40, 40), (40, 60, 200)), ((30, 160, 60), (220, 200, 40))]):
        img = np.zeros((300, 400, 3), np.uint8)
        img[:, :200] = c1
        img[:, 200:] = c2
        Image.fromarray(img).save(os.path.join(tmp_path, "p%d.png" % i))
    res = run_eval(str(tmp_path), hint_counts=(0, 10), methods=("gray", "levin"), progress=False)
    assert res["photos"] == 2
    assert res["methods"]["levin"][10] > res["methods"]["gray"][10] + 5
    assert res["methods"]["levin"][0] == res["methods"]["gray"][0]
    table = format_table(res)
    assert "levin" in table and "gray" in table and "10" in table.splitlines()[1]
