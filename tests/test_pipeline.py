"""The shipped ONNX model, end to end on real photos, through the real onnxruntime session."""

import numpy as np
import pytest

from engine import TinctError
from engine.color import rgb_to_lab
from engine.pipeline import Colorizer, working_size
from tests.helpers import to_gray_rgb, val_photo


@pytest.fixture(scope="module")
def colorizer():
    return Colorizer()


def chroma(ab):
    return np.sqrt((ab ** 2).sum(-1))


def test_shipped_model_colors_where_the_truth_is_colorful(colorizer):
    truth = val_photo("kodak_kodim23.png")  # parrots: large red, yellow, green areas
    res = colorizer.colorize(to_gray_rgb(truth))
    true_chroma = chroma(rgb_to_lab(truth)[..., 1:])
    pred = res.ab
    colorful = true_chroma > 30
    assert colorful.mean() > 0.2
    assert chroma(pred)[colorful].mean() > 5.0  # gray would be 0
    rgb = res.render()
    assert rgb.shape == truth.shape and rgb.dtype == np.uint8
    assert res.info["device"] in ("cpu", "cuda")


def test_output_keeps_the_photos_own_lightness(colorizer):
    gray = to_gray_rgb(val_photo("kodak_kodim05.png"))
    res = colorizer.colorize(gray)
    l_in = rgb_to_lab(gray)[..., 0]
    l_out = rgb_to_lab(res.render())[..., 0]
    inside = chroma(res.ab) < 40  # out-of-gamut colors get clipped, which moves L a little
    assert np.abs(l_in - l_out)[inside].mean() < 0.5


def test_a_hint_pulls_the_color_toward_it(colorizer):
    gray = to_gray_rgb(val_photo("kodak_kodim03.png"))
    h, w = gray.shape[:2]
    hints = np.zeros((h, w, 4), np.uint8)
    cy, cx = h // 2, w // 2
    hints[cy - 2:cy + 3, cx - 2:cx + 3] = (40, 80, 220, 255)  # a blue dot
    blue = rgb_to_lab(np.array([[40, 80, 220]], np.uint8))[0, 1:]
    auto = colorizer.colorize(gray).ab[cy - 4:cy + 5, cx - 4:cx + 5].reshape(-1, 2).mean(0)
    hinted = colorizer.colorize(gray, hints=hints).ab[cy - 4:cy + 5, cx - 4:cx + 5].reshape(-1, 2).mean(0)
    assert np.linalg.norm(hinted - blue) < 0.5 * np.linalg.norm(auto - blue)


def test_a_dot_colors_its_whole_region_and_stops_at_the_edge(colorizer):
    """The hints reach the network already spread along the photo's edges (Levin at half the
    working grid): one dot colors its region far beyond the dot, and not the region next door."""
    rng = np.random.default_rng(0)
    h, w = 192, 256
    l = np.where(np.arange(w)[None, :] < 128, 35.0, 80.0) + rng.normal(0, 1.0, (h, w))
    gray = np.clip(np.repeat((l / 100.0 * 255)[..., None], 3, -1), 0, 255).astype(np.uint8)
    hints = np.zeros((h, w, 4), np.uint8)
    hints[94:99, 30:35] = (40, 80, 220, 255)  # a blue dot near the left border
    blue = rgb_to_lab(np.array([[40, 80, 220]], np.uint8))[0, 1:]
    auto = colorizer.colorize(gray).ab
    ab = colorizer.colorize(gray, hints=hints).ab
    far_left = ab[20:170, 90:120].reshape(-1, 2).mean(0)  # 60+ px from the dot, same region
    right = ab[20:170, 140:240].reshape(-1, 2).mean(0)
    assert np.linalg.norm(far_left - blue) < 0.4 * np.linalg.norm(blue)
    assert np.linalg.norm(right - auto[20:170, 140:240].reshape(-1, 2).mean(0)) < 0.3 * np.linalg.norm(blue)


@pytest.mark.parametrize("shape,dtype", [
    ((16, 16), np.uint8), ((37, 211), np.uint16), ((90, 60, 3), np.uint8),
    ((64, 48, 4), np.uint16), ((40, 40, 3), np.float32),
])
def test_any_size_and_pixel_type(colorizer, shape, dtype):
    rng = np.random.default_rng(0)
    hi = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    photo = (rng.random(shape) * hi).astype(dtype)
    res = colorizer.colorize(photo)
    assert res.ab.shape == shape[:2] + (2,)
    out = res.render()
    assert out.shape == shape[:2] + (3,)
    assert out.dtype == (np.uint8 if dtype == np.uint8 else np.uint16)


def test_working_size_rounds_to_multiples_of_8():
    assert working_size(3000, 4000) == (256, 344)
    assert working_size(100, 50) == (96, 48)
    assert working_size(4000, 3000, size=300) == (400, 304)


def test_bad_inputs_raise_clear_errors(colorizer):
    with pytest.raises(TinctError, match="too small"):
        colorizer.colorize(np.zeros((8, 100), np.uint8))
    with pytest.raises(TinctError, match="hint image is 10x20 but the photo is 30x30"):
        colorizer.colorize(np.zeros((30, 30), np.uint8), hints=np.zeros((20, 10, 4), np.uint8))
    with pytest.raises(TinctError, match="unsupported pixel type"):
        colorizer.colorize(np.zeros((30, 30), np.int64))


def test_strips_equal_the_whole(colorizer):
    photo = to_gray_rgb(val_photo("kodak_kodim05.png"))
    res = colorizer.colorize(photo)
    whole = res.ab
    parts = np.concatenate([ab for _, _, ab in res.strips(rows=97)])
    assert np.allclose(whole, parts, atol=1e-4)
