"""The sRGB regression loss (`tinct train --loss rgb`, or `huber+rgb`): the same conversion as
the pipeline's, so it measures what `tinct eval` measures, and a real tiny training run with it."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.color import lab_to_rgb  # noqa: E402
from engine.train.loop import compute_loss, loss_weights, train  # noqa: E402
from engine.train.rgb_loss import RGB_SCALE, lab_to_srgb, rgb_mse  # noqa: E402
from tests.helpers import copy_corpus  # noqa: E402


def _lab(rng, shape):
    return np.stack([rng.uniform(0, 100, shape), rng.uniform(-110, 110, shape),
                     rng.uniform(-110, 110, shape)], -1).astype(np.float32)


def _nchw(lab):
    t = torch.from_numpy(lab).permute(2, 0, 1)[None]
    return t[:, :1], t[:, 1:]


def test_conversion_matches_the_pipelines_including_out_of_gamut_colors():
    lab = _lab(np.random.default_rng(0), (16, 16))
    l, ab = _nchw(lab)
    ours = lab_to_srgb(l, ab)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, lab_to_rgb(lab), atol=1e-5)


def test_loss_is_the_squared_8bit_rgb_error():
    rng = np.random.default_rng(1)
    truth, pred = _lab(rng, (8, 8)), _lab(rng, (8, 8))
    pred[..., 0] = truth[..., 0]
    l, ab_true = _nchw(truth)
    _, ab_pred = _nchw(pred)
    expected = np.mean(((lab_to_rgb(pred) - lab_to_rgb(truth)) * 255.0) ** 2) / RGB_SCALE
    assert rgb_mse(l, ab_pred, ab_true).item() == pytest.approx(expected, rel=1e-4)
    assert rgb_mse(l, ab_true, ab_true).item() == 0.0


def test_a_chroma_error_in_a_shadow_costs_less_than_in_the_light():
    """Why this loss differs from one on ab: the same ab error shows less in dark pixels."""
    ab_true = torch.zeros(1, 2, 1, 1)
    ab_pred = torch.tensor([20.0, -10.0]).reshape(1, 2, 1, 1)
    dark = rgb_mse(torch.full((1, 1, 1, 1), 15.0), ab_pred, ab_true)
    light = rgb_mse(torch.full((1, 1, 1, 1), 70.0), ab_pred, ab_true)
    assert 0 < dark.item() < 0.75 * light.item()


def test_gradients_pull_the_prediction_toward_the_truth():
    l = torch.full((1, 1, 4, 4), 50.0)
    ab_true = torch.zeros(1, 2, 4, 4)
    ab_pred = torch.full((1, 2, 4, 4), 10.0, requires_grad=True)
    rgb_mse(l, ab_pred, ab_true).backward()
    assert (ab_pred.grad > 0).all()


def test_a_tiny_training_run_with_the_rgb_loss(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    out = str(tmp_path / "run")
    train(copy_corpus(corpus, 4), out, steps=2, batch_size=2, crop=32, checkpoint_every=1, progress=False,
          log=lambda m: None, loss="rgb")
    lines = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [entry["step"] for entry in lines] == [1, 2]
    assert all(np.isfinite(entry["rgb"]) and entry["rgb"] > 0 and "huber" not in entry for entry in lines)


def test_huber_plus_rgb_is_the_sum_of_the_two_and_unknown_names_are_refused():
    from engine.gamut import ab_bins
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS

    torch.manual_seed(0)
    model = ColorNet(CONFIGS["small"]).eval()
    rng = np.random.default_rng(1)
    lab = torch.from_numpy(_lab(rng, (2, 16, 16))).permute(0, 3, 1, 2)
    batch = {"l": lab[:, :1], "ab": lab[:, 1:] * 0.5, "hint_ab": torch.zeros(2, 2, 16, 16),
             "hint_mask": torch.zeros(2, 1, 16, 16), "global_hints": torch.zeros(2, 316)}
    bins = torch.from_numpy(ab_bins())
    with torch.no_grad():
        parts = {name: compute_loss(model, batch, bins, loss=name)[1] for name in ("huber", "rgb", "huber+rgb")}
    assert parts["huber+rgb"]["huber+rgb"] == pytest.approx(parts["huber"]["huber"] + parts["rgb"]["rgb"], rel=1e-5)
    assert parts["huber+rgb"]["ce"] == pytest.approx(parts["huber"]["ce"])
    with pytest.raises(ValueError, match="unknown regression loss"):
        compute_loss(model, batch, bins, loss="l2")
    with pytest.raises(ValueError, match="unknown loss schedule"):
        loss_weights(0, 10, "warmup")
