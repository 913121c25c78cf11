"""A tiny real training run: a few steps on a handful of corpus photos, resume,
ONNX export, and parity of the ONNX file with the torch network."""

import json
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.runtime import ModelRuntime  # noqa: E402
from engine.train.data import BatchMaker, HintSimulator, load_corpus  # noqa: E402
from engine.train.export import export_onnx  # noqa: E402
from engine.train.loop import load_model, train  # noqa: E402
from tests.helpers import CORPUS  # noqa: E402


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name in sorted(os.listdir(CORPUS))[:6]:
        shutil.copy(os.path.join(CORPUS, name), d)
    return str(d)


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    train(tiny_corpus, out, steps=3, batch_size=2, crop=32, checkpoint_every=2, progress=False, log=lambda m: None)
    return out


def test_tiny_training_writes_checkpoint_and_log(trained):
    lines = [json.loads(line) for line in open(os.path.join(trained, "log.jsonl"))]
    assert [entry["step"] for entry in lines] == [2, 3]
    assert all(np.isfinite(entry["huber"]) and np.isfinite(entry["ce"]) for entry in lines)


def test_training_resumes_from_checkpoint(trained, tiny_corpus):
    messages = []
    train(tiny_corpus, trained, steps=4, batch_size=2, crop=32, progress=False, log=messages.append)
    assert messages and "resumed from step 3" in messages[0]
    _, state = load_model(os.path.join(trained, "checkpoint.pt"))
    assert state["step"] == 4


def test_onnx_export_matches_torch(trained, tmp_path):
    ckpt = os.path.join(trained, "checkpoint.pt")
    onnx_path = export_onnx(ckpt, str(tmp_path / "m.onnx"))
    model, _ = load_model(ckpt)
    rng = np.random.default_rng(0)
    h, w = 48, 72  # not the export size: dynamic axes must work
    inputs = [rng.uniform(0, 100, (1, 1, h, w)), rng.normal(0, 30, (1, 2, h, w)),
              (rng.random((1, 1, h, w)) > 0.97), rng.random((1, GLOBAL_DIM))]
    inputs = [np.asarray(x, np.float32) for x in inputs]
    ab, dist = ModelRuntime(onnx_path).run(*inputs)
    with torch.no_grad():
        tab, tdist = model(*[torch.from_numpy(x) for x in inputs])
    assert ab.shape == (1, 2, h, w) and dist.shape == (1, 313, h // 4, w // 4)
    assert np.abs(ab - tab.numpy()).max() < 1e-3
    assert np.abs(dist - tdist.numpy()).max() < 1e-3


def test_hint_simulation_follows_the_paper():
    rng = np.random.default_rng(0)
    sim = HintSimulator(rng)
    counts = [sim.num_points() for _ in range(4000)]
    assert 0.25 < np.mean(np.array(counts) == 0) < 0.35  # a share of samples with no hints
    ab = rng.normal(0, 20, (64, 64, 2)).astype(np.float32)
    hint_ab, mask = sim.local(ab)
    for _ in range(20):
        hint_ab, mask = sim.local(ab)
        if mask.any():
            break
    ys, xs = np.nonzero(mask)
    assert mask.any() and hint_ab[ys, xs].any()


def test_batches_have_the_network_shapes(tiny_corpus):
    maker = BatchMaker(load_corpus(tiny_corpus), crop=32, seed=1)
    b = maker.batch(3)
    assert b["l"].shape == (3, 1, 32, 32) and b["ab"].shape == (3, 2, 32, 32)
    assert b["global_hints"].shape == (3, GLOBAL_DIM)
    assert 0 <= b["l"].min() and b["l"].max() <= 100


def test_a_run_moves_with_its_weights_file(trained, tiny_corpus, tmp_path):
    """weights.pt (no optimizer) starts a run elsewhere at its step with the same network."""
    weights = os.path.join(trained, "weights.pt")
    saved = torch.load(weights, weights_only=False)
    assert "optimizer" not in saved and saved["step"] >= 3
    messages = []
    out = str(tmp_path / "moved")
    train(tiny_corpus, out, steps=saved["step"] + 1, batch_size=2, crop=32, progress=False, log=messages.append,
          init=weights)
    assert "started from the weights of step %d" % saved["step"] in messages[0]
    _, state = load_model(os.path.join(out, "checkpoint.pt"))
    assert state["step"] == saved["step"] + 1  # one step on from where the weights left off


def test_older_checkpoints_without_the_hint_summary_still_load(trained, tmp_path):
    from engine.train.loop import load_weights
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS

    state = torch.load(os.path.join(trained, "checkpoint.pt"), weights_only=False)["model"]
    old = {k: v for k, v in state.items() if not k.startswith("hint_summary.")}
    model = ColorNet(CONFIGS["small"])
    assert load_weights(model, old) is False  # loaded, with the new layer left at its no-op start
    assert float(model.hint_summary.net[-1].weight.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(model, {k: v for k, v in state.items() if not k.startswith("conv1.")})
