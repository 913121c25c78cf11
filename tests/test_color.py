import numpy as np

from engine import color


def test_lab_round_trip_8bit_is_exact():
    rgb = np.random.default_rng(0).integers(0, 256, (4096, 3)).astype(np.uint8)
    back = color.quantize(color.lab_to_rgb(color.rgb_to_lab(rgb)), 8)
    assert np.array_equal(back, rgb)


def test_lab_round_trip_16bit_within_one_level():
    rgb = np.random.default_rng(1).integers(0, 65536, (4096, 3)).astype(np.uint16)
    back = color.quantize(color.lab_to_rgb(color.rgb_to_lab(rgb)), 16)
    assert np.abs(back.astype(int) - rgb).max() <= 2


def test_known_values_d65():
    lab = color.rgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.01)
    assert np.allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)
    assert np.allclose(lab[2], [0, 0, 0], atol=0.01)


def test_gray_l_matches_rgb_l_and_lut_matches_formula():
    g = np.arange(256, dtype=np.uint8)
    assert np.allclose(color.gray_to_l(g), color.rgb_to_l(np.stack([g, g, g], -1)), atol=1e-3)
    assert np.allclose(color.rgb_to_l(np.stack([g, g, g], -1)),
                       color.rgb_to_l(np.stack([g, g, g], -1).astype(np.float32) / 255), atol=1e-3)


def test_l_to_gray_is_the_photo_gray():
    """The inverse of gray_to_l: a black-and-white photo's 8-bit gray comes back exactly."""
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(color.quantize(color.l_to_gray(color.gray_to_l(gray))), gray)
