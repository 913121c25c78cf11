"""The detector's features lent to the colorization network (engine/semantics.py): the
exposed outputs, where they are sampled for a photo and for a training crop, and the
network branch that takes them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from engine.detect import Detector
from engine.semantics import (CELL, FEATURE_OUTPUTS, SEMANTIC_DIM, FeatureMaps, cell_centers, feature_maps,
                              on_grid, sample)
from tests.helpers import ROOT, VAL, needs_val

BUS = os.path.join(VAL, "coco_000000002006.jpg")


def coordinate_maps(scale, offset):
    """FeatureMaps whose channel 0 holds each cell's column and channel 1 its row (cell units),
    so sampling returns the continuous cell coordinates it read from."""
    maps = {}
    for stride in FEATURE_OUTPUTS:
        side = 416 // stride
        m = np.zeros((SEMANTIC_DIM // 2, side, side), np.float32)
        m[0] = np.arange(side)[None, :]
        m[1] = np.arange(side)[:, None]
        maps[stride] = m
    return FeatureMaps(maps, scale, offset)


@pytest.fixture(scope="module")
def detector():
    return Detector()


def test_the_shipped_detector_exposes_its_feature_pyramid(detector):
    fm = feature_maps(detector, np.full((60, 90), 128, np.uint8))
    assert fm.maps[8].shape == (128, 52, 52) and fm.maps[32].shape == (128, 13, 13)
    assert fm.scale == pytest.approx(416 / 90.0) and fm.offset == (0, (416 - 277) // 2)
    assert all(np.isfinite(m).all() for m in fm.maps.values())


def test_sampling_reads_the_cell_under_each_photo_position():
    scale, (ox, oy) = 416 / 200.0, (0, 104)  # a 100 x 200 photo, letterboxed
    fm = coordinate_maps(scale, (ox, oy))
    ys, xs = np.array([0.0, 50.0, 99.9]), np.array([10.0, 100.0, 190.0])
    grid = sample(fm, ys, xs)
    assert grid.shape == (SEMANTIC_DIM, 3, 3)
    for stride, first in ((8, 0), (32, SEMANTIC_DIM // 2)):
        want_x = np.clip((xs * scale + ox) / stride - 0.5, 0, 416 // stride - 1)
        want_y = np.clip((ys * scale + oy) / stride - 0.5, 0, 416 // stride - 1)
        np.testing.assert_allclose(grid[first, 0], want_x, atol=1e-4)
        np.testing.assert_allclose(grid[first + 1, :, 0], want_y, atol=1e-4)


def test_a_photo_grid_has_one_vector_per_bottleneck_cell():
    fm = coordinate_maps(416 / 320.0, (0, 48))
    grid = on_grid(fm, (240, 320), (64, 88))  # the working grid need not be the photo's size
    assert grid.shape == (1, SEMANTIC_DIM, 64 // CELL, 88 // CELL)
    centers = cell_centers(88 // CELL, 320, 88)
    assert centers[0] == pytest.approx(4 * 320 / 88.0) and centers[-1] == pytest.approx(84 * 320 / 88.0)


def test_training_crops_sample_where_they_came_from_and_flip_with_the_pixels():
    """A crop's features are read at its cells' positions in the photo: across a crop the
    column coordinate steps by the crop's scale, and runs backwards when the crop is flipped."""
    from engine.train.data import BatchMaker

    rgb = np.random.default_rng(0).integers(0, 255, (96, 160, 3), np.uint8)
    scale = 416 / 160.0
    maker = BatchMaker([rgb], crop=32, seed=5, semantics=[coordinate_maps(scale, (0, 83))])
    seen = set()
    for _ in range(12):
        s = maker.sample()
        cols = s["semantic"][0, 0]  # stride-8 cell column, per crop cell
        step = np.diff(cols)
        assert s["semantic"].shape == (SEMANTIC_DIM, 4, 4)
        assert np.allclose(step, step[0], atol=1e-3) and abs(step[0]) > 0
        # a cell is 8 crop pixels; the crop was scaled by between 0.5 and 1 of the photo
        assert 8 * scale / 8 - 1e-3 <= abs(step[0]) <= 2 * 8 * scale / 8 + 1e-3
        seen.add(step[0] > 0)
        assert np.allclose(s["semantic"][1, :, 0], s["semantic"][1, :, -1])  # rows do not depend on columns
    assert seen == {True, False}  # both plain and flipped crops


@needs_val
def test_features_tell_an_object_from_the_sky(detector):
    """The point of borrowing them: on a photo of a bus, cells on the bus are closer to each
    other than to cells of the background above it (features centered over the photo)."""
    from PIL import Image

    with Image.open(BUS) as im:
        gray = np.asarray(im.convert("L"))
    grid = on_grid(feature_maps(detector, gray), gray.shape, (288, 384))[0]  # 36 x 48 cells
    grid = grid - grid.mean((1, 2), keepdims=True)
    bus = grid[:, 12:30, 6:42].reshape(SEMANTIC_DIM, -1)  # inside BUS_BOX (29, 48, 357, 253)
    top = grid[:, 0:4, :].reshape(SEMANTIC_DIM, -1)  # above the roof

    def unit(v):
        return v / np.linalg.norm(v, axis=0, keepdims=True)

    within = float((unit(bus).T @ unit(bus)).mean())
    across = float((unit(bus).T @ unit(top)).mean())
    assert within > across + 0.2, (within, across)  # measured: 0.11 against -0.20


def test_the_semantic_branch_starts_as_a_no_op():
    torch = pytest.importorskip("torch")
    from engine.hints import GLOBAL_DIM
    from engine.models.colornet import ColorNet

    torch.manual_seed(0)
    model = ColorNet().eval()
    l = torch.rand(1, 1, 32, 32) * 100
    args = (l, torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32), torch.zeros(1, GLOBAL_DIM))
    with torch.no_grad():
        plain, _ = model(*args)
        fed, _ = model(*args, None, torch.randn(1, SEMANTIC_DIM, 4, 4))
    assert torch.equal(plain, fed)


def test_semantic_dropout_acts_in_training_only():
    """--semantic-dropout zeroes features while training; an exported (eval-mode) network sees them all."""
    torch = pytest.importorskip("torch")
    from engine.models.colornet import SemanticIn

    torch.manual_seed(0)
    branch = SemanticIn(SEMANTIC_DIM, 8)
    branch.net[-1].weight.data.normal_(0, 1.0)  # make the branch count
    features = torch.randn(2, SEMANTIC_DIM, 4, 4)
    branch.eval()
    with torch.no_grad():
        clean = branch(features)
        branch.dropout.p = 0.5
        assert torch.equal(branch(features), clean)  # eval: no dropout
        branch.train()
        first, second = branch(features), branch(features)
    assert not torch.allclose(first, second)  # a fresh draw each time
    assert not torch.allclose(first, branch.eval()(features).detach())


def test_semantic_strides_train_on_the_kept_features_only():
    """--semantic-strides 8: the stride-32 features get no weight, before and after training
    steps, so the network's output does not move when only they change."""
    torch = pytest.importorskip("torch")
    from engine.models.colornet import SemanticIn
    from engine.semantics import stride_channels

    torch.manual_seed(0)
    branch = SemanticIn(SEMANTIC_DIM, 8)
    branch.net[1].weight.data.normal_(0, 1.0)  # as if trained on both strides before
    branch.net[-1].weight.data.normal_(0, 1.0)
    branch.keep_strides((8,))
    opt = torch.optim.Adam(branch.parameters(), lr=0.1)
    features = torch.randn(4, SEMANTIC_DIM, 4, 4)
    for _ in range(3):
        opt.zero_grad()
        (branch(features) - 1.0).square().mean().backward()
        opt.step()
    weight = branch.net[1].weight.detach()
    assert weight[:, stride_channels(32)].abs().max() == 0
    assert weight[:, stride_channels(8)].abs().max() > 0
    branch.eval()
    moved = features.clone()
    moved[:, stride_channels(32)] += 5.0
    moved_s8 = features.clone()
    moved_s8[:, stride_channels(8)] += 5.0
    with torch.no_grad():
        assert torch.allclose(branch(features), branch(moved), atol=1e-6)
        assert not torch.allclose(branch(features), branch(moved_s8), atol=1e-3)


@pytest.mark.parametrize("extra, message", [
    (["--semantic-dropout", "0.5"], "--semantic-dropout"),
    (["--semantic-strides", "8"], "needs --semantic"),
    (["--semantic", "--semantic-strides", "16"], "--semantic-strides takes"),
    (["--semantic", "--semantic-strides", "eight"], "expected strides"),
])
def test_semantic_options_refused_clearly(tiny_corpus, tmp_path, extra, message):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "--corpus", tiny_corpus, "--out", str(out),
                           "--steps", "1"] + extra, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # refused before the output folder is made
