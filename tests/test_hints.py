import numpy as np

from engine.color import rgb_to_lab
from engine.gamut import NUM_BINS, ab_bins, compute_ab_bins
from engine.hints import GLOBAL_DIM, encode_local_hints, global_hint_vector


def test_one_pixel_hint_survives_downscale():
    hint = np.zeros((1000, 1500, 4), np.uint8)
    hint[517, 903] = (20, 160, 40, 255)  # a single green pencil dot
    ab, mask = encode_local_hints(hint, 256, 384)
    assert mask.sum() == 9  # the dot's cell and its small-brush footprint around it
    y, x = np.argwhere(mask).mean(0)
    assert (y, x) == (517 * 256 // 1000, 903 * 384 // 1500)
    expect = rgb_to_lab(np.array([[20, 160, 40]], np.uint8))[0, 1:]
    assert np.allclose(ab[int(y), int(x)], expect, atol=0.01)


def test_hint_cell_averages_its_hint_pixels_and_ignores_transparent():
    hint = np.zeros((64, 64, 4), np.uint8)
    hint[0, 0] = (255, 0, 0, 255)
    hint[0, 1] = (255, 0, 0, 128)  # partly transparent still counts
    hint[1, 0] = (0, 0, 255, 0)  # fully transparent is no hint
    ab, mask = encode_local_hints(hint, 8, 8)
    assert mask[0, 0] == 1 and mask.sum() == 4  # the corner cell, grown to a (clipped) 3x3 footprint
    red = rgb_to_lab(np.array([[255, 0, 0]], np.uint8))[0, 1:]
    assert np.allclose(ab[0, 0], red, atol=0.01)


def test_global_vector_from_reference():
    ref = np.zeros((200, 300, 3), np.uint8)
    ref[...] = (30, 90, 200)  # a blue photo
    vec = global_hint_vector(ref)
    assert vec.shape == (GLOBAL_DIM,)
    hist = vec[:NUM_BINS]
    assert abs(hist.sum() - 1) < 1e-4 and vec[NUM_BINS] == 1 and vec[NUM_BINS + 2] == 1
    peak = ab_bins()[hist.argmax()]
    blue = rgb_to_lab(np.array([[30, 90, 200]], np.uint8))[0, 1:]
    assert np.linalg.norm(peak - blue) < 10
    assert 0.8 < vec[NUM_BINS + 1] <= 1.0  # saturation of that blue is 0.85
    assert not global_hint_vector(None).any()


def test_shipped_bins_are_reproducible():
    assert ab_bins().shape == (NUM_BINS, 2)
    assert np.array_equal(compute_ab_bins(), ab_bins())


def test_a_one_pixel_dot_gets_a_small_brush_footprint():
    hints = np.zeros((300, 300, 4), np.uint8)
    hints[150, 150] = (200, 30, 30, 255)  # one pencil pixel on a photo larger than the grid
    ab, mask = encode_local_hints(hints, 100, 100)
    assert mask.sum() == 9 and mask[49:52, 49:52].all()
    red = rgb_to_lab(np.array([[200, 30, 30]], np.uint8))[0, 1:]
    np.testing.assert_allclose(ab[49:52, 49:52].reshape(-1, 2), np.tile(red, (9, 1)), atol=1e-3)


def test_painted_patches_are_not_grown():
    hints = np.zeros((100, 100, 4), np.uint8)
    hints[20:25, 20:25] = (30, 200, 30, 255)  # a 5x5 patch: a brush stroke, kept as painted
    hints[70, 70] = (30, 30, 200, 255)        # a lone dot far away grows
    ab, mask = encode_local_hints(hints, 100, 100)
    assert mask[20:25, 20:25].all() and mask[15:30, 15:30].sum() == 25
    assert mask[69:72, 69:72].all() and mask.sum() == 25 + 9
