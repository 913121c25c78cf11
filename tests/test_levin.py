import numpy as np
import pytest

from engine import TinctError
from engine.levin import levin_colorize


def two_regions(h=40, w=60, edge=31):
    l = np.full((h, w), 30.0, np.float32)
    l[:, edge:] = 75.0
    l += np.random.default_rng(0).normal(0, 0.3, l.shape).astype(np.float32)  # film grain
    return l


def test_each_region_takes_its_hint_and_the_edge_stops_bleeding():
    l = two_regions()
    ab = np.zeros(l.shape + (2,), np.float32)
    mask = np.zeros(l.shape, bool)
    ab[5:35, 10], mask[5:35, 10] = (50, 10), True  # a scribble in each region, as in the paper
    ab[5:35, 50], mask[5:35, 50] = (-20, -40), True
    out = levin_colorize(l, ab, mask)
    assert np.allclose(out[:, :29], (50, 10), atol=4)
    assert np.allclose(out[:, 33:], (-20, -40), atol=4)


def test_no_hints_is_gray_and_bad_shapes_are_refused():
    l = two_regions()
    assert not levin_colorize(l, np.zeros(l.shape + (2,)), np.zeros(l.shape, bool)).any()
    with pytest.raises(TinctError, match="Levin needs"):
        levin_colorize(l, np.zeros((3, 3, 2)), np.zeros(l.shape, bool))
