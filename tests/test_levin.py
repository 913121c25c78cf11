import numpy as np
import pytest

from engine import TinctError
from engine.levin import levin_colorize, propagate_hints


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


def test_propagated_hints_follow_edges_at_half_resolution():
    """The network's hint input: each region takes its own dot, the edge stops the spread."""
    l = two_regions(48, 64, edge=32)
    ab = np.zeros(l.shape + (2,), np.float32)
    mask = np.zeros(l.shape, np.float32)
    ab[20, 10], mask[20, 10] = (50, 10), 1  # one pixel each: they must survive the coarser grid
    ab[30, 50], mask[30, 50] = (-20, -40), 1
    out = propagate_hints(l, ab, mask)
    assert out.shape == l.shape + (3,) and out.dtype == np.float32
    assert np.allclose(out[:, :29, :2], (50, 10), atol=4)
    assert np.allclose(out[:, 35:, :2], (-20, -40), atol=4)
    assert out[:, :29, 2].min() > 0.2 and out[:, 35:, 2].min() > 0.2  # both regions are reached


def test_a_lone_dot_s_reach_stops_at_the_edge_its_color_does_not():
    """With one dot, Levin gives its color to the whole photo; its reach tells the network where
    that color is backed by the dot and where it is only carried on for lack of other hints."""
    l = two_regions(48, 64, edge=32)
    ab = np.zeros(l.shape + (2,), np.float32)
    mask = np.zeros(l.shape, np.float32)
    ab[20, 10], mask[20, 10] = (50, 10), 1
    out = propagate_hints(l, ab, mask)
    assert np.allclose(out[..., :2], (50, 10), atol=4)
    assert out[:, :28, 2].min() > 0.3 and out[:, 36:, 2].max() < 0.05


def test_propagated_hints_are_zero_without_hints_and_odd_sizes_work():
    l = two_regions(41, 57, edge=20)
    assert not propagate_hints(l, np.zeros(l.shape + (2,)), np.zeros(l.shape)).any()
    ab = np.zeros(l.shape + (2,), np.float32)
    mask = np.zeros(l.shape, np.float32)
    ab[40, 56], mask[40, 56] = (30, 30), 1  # in the last row and column, outside whole cells
    out = propagate_hints(l, ab, mask)
    assert out.shape == (41, 57, 3)
    assert np.allclose(out[:, 25:, :2], (30, 30), atol=4)  # its region takes its color
