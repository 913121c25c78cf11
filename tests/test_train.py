"""A tiny real training run: a few steps on a handful of corpus photos, resume,
ONNX export, and parity of the ONNX file with the torch network."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.runtime import ModelRuntime  # noqa: E402
from engine.train.data import BatchMaker, HintSimulator, load_corpus  # noqa: E402
from engine.train.export import export_onnx  # noqa: E402
from engine.train.loop import load_model, train  # noqa: E402
from tests.helpers import ROOT  # noqa: E402


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
    model, _ = load_model(os.path.join(trained, "checkpoint.pt"))
    rng = np.random.default_rng(0)
    h, w = 48, 72  # not the export size: dynamic axes must work
    inputs = [rng.uniform(0, 100, (1, 1, h, w)), rng.normal(0, 30, (1, 2, h, w)),
              (rng.random((1, 1, h, w)) > 0.97), rng.random((1, GLOBAL_DIM)),
              np.concatenate([rng.normal(0, 30, (1, 2, h, w)), rng.random((1, 1, h, w))], 1)]
    inputs = [np.asarray(x, np.float32) for x in inputs]
    model.prop_gate.conv.bias.data.fill_(0.3)  # an open gate, so the propagated hints count in the parity
    model.prop_in.weight.data.normal_(0, 0.1)
    model.reach_in.weight.data.normal_(0, 0.1)
    model.prop_gate.reach.weight.data.fill_(-1.0)
    torch.save({"model": model.state_dict(), "step": 3, "model_name": "small",
                "config": model.config.to_dict()}, str(tmp_path / "w.pt"))
    onnx_path = export_onnx(str(tmp_path / "w.pt"), str(tmp_path / "m.onnx"))
    runtime = ModelRuntime(onnx_path)
    assert runtime.wants_hint_prop
    ab, dist = runtime.run(*inputs)
    with torch.no_grad():
        tab, tdist = model(*[torch.from_numpy(x) for x in inputs])
    assert ab.shape == (1, 2, h, w) and dist.shape == (1, 313, h // 4, w // 4)
    assert np.abs(ab - tab.numpy()).max() < 1e-3
    assert np.abs(dist - tdist.numpy()).max() < 1e-3


def test_the_propagated_hints_count_only_when_the_photo_has_hints():
    """The gate is zero without any hint: automatic colorization is the network's alone."""
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS

    torch.manual_seed(0)
    model = ColorNet(CONFIGS["small"]).eval()
    model.prop_gate.conv.bias.data.fill_(5.0)  # nearly fully open wherever a hint exists
    l = torch.rand(1, 1, 32, 32) * 100
    prop = torch.cat([torch.full((1, 2, 32, 32), 40.0), torch.ones(1, 1, 32, 32)], 1)
    none = torch.zeros(1, 1, 32, 32)
    g = torch.zeros(1, GLOBAL_DIM)
    with torch.no_grad():
        base, _ = model(l, torch.zeros(1, 2, 32, 32), none, g)
        no_hint, _ = model(l, torch.zeros(1, 2, 32, 32), none, g, prop)
        mask = none.clone()
        mask[..., 5, 5] = 1
        hinted, _ = model(l, torch.zeros(1, 2, 32, 32), mask, g, prop)
    assert torch.allclose(base, no_hint)
    assert float((hinted - 40.0).abs().max()) < 1.0  # the gate passes the propagation through


def test_batches_carry_the_hints_propagated_along_edges(tiny_corpus):
    maker = BatchMaker(load_corpus(tiny_corpus), crop=32, seed=3)
    b = maker.batch(8)
    assert b["hint_prop"].shape == (8, 3, 32, 32)
    for i in range(8):
        hinted = b["hint_mask"][i, 0] > 0
        if hinted.any():
            reach = b["hint_prop"][i, 2]
            assert (np.abs(b["hint_prop"][i, :2]) > 0).mean() > 0.9 and 0 < reach.max() <= 1 and reach.min() >= 0
        else:
            assert not b["hint_prop"][i].any()


def test_models_exported_before_the_propagated_hints_still_run(trained, tmp_path):
    """A model file without the hint_prop input (an older export, or --model of one) gets no
    propagation: the pipeline asks the session which inputs it has."""
    import warnings

    from engine.pipeline import Colorizer
    from engine.runtime import OUTPUTS

    model, _ = load_model(os.path.join(trained, "checkpoint.pt"))

    class Legacy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, l, hint_ab, hint_mask, global_hints):
            return self.net(l, hint_ab, hint_mask, global_hints)

    path = str(tmp_path / "legacy.onnx")
    names = ["l", "hint_ab", "hint_mask", "global_hints"]
    axes = {n: {0: "b", 2: "h", 3: "w"} for n in names[:3] + list(OUTPUTS)}
    dummy = (torch.rand(1, 1, 32, 32) * 100, torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32),
             torch.zeros(1, GLOBAL_DIM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Legacy(model), dummy, path, input_names=names, output_names=list(OUTPUTS),
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    colorizer = Colorizer(model_path=path, fused_model_path=None)
    assert not colorizer.runtime.wants_hint_prop
    photo = np.random.default_rng(0).integers(0, 255, (40, 48), np.uint8)
    hints = np.zeros((40, 48, 4), np.uint8)
    hints[10, 10] = (200, 40, 40, 255)
    out = colorizer.colorize(photo, hints=hints, instances="none").ab
    assert out.shape == (40, 48, 2) and np.isfinite(out).all()


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


def test_older_checkpoints_without_the_newer_layers_still_load(trained, tmp_path):
    from engine.train.loop import load_weights
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS

    state = torch.load(os.path.join(trained, "checkpoint.pt"), weights_only=False)["model"]
    old = {k: v for k, v in state.items()
           if not k.startswith(("hint_summary.", "prop_in.", "reach_in.", "prop_gate."))}
    model = ColorNet(CONFIGS["small"])
    assert load_weights(model, old) is False  # loaded, with the new layer left at its no-op start
    assert float(model.hint_summary.net[-1].weight.detach().abs().sum()) == 0.0
    assert float(model.prop_in.weight.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(model, {k: v for k, v in state.items() if not k.startswith("conv1.")})


def test_checkpoints_from_before_the_detector_features_were_removed_still_load(trained, tiny_corpus, tmp_path):
    """Checkpoints written while ColorNet had its detector-features branch (removed 2026-12-04)
    hold its no-op layers: they load without them, and a resume starts Adam afresh. Weights
    trained with the features are refused; tools/checkpoints/tinct-small.pt predates the branch."""
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS
    from engine.train.loop import load_weights

    _, state = load_model(os.path.join(ROOT, "tools", "checkpoints", "tinct-small.pt"))
    assert state["step"] == 10400 and not any(k.startswith("semantic_in.") for k in state["model"])
    saved = torch.load(os.path.join(trained, "checkpoint.pt"), weights_only=False)
    branch = {"semantic_in.net.0.running_mean": torch.zeros(256), "semantic_in.net.3.weight": torch.zeros(64, 64, 1, 1)}
    assert load_weights(ColorNet(CONFIGS["small"]), dict(saved["model"], **branch)) is False
    out = str(tmp_path / "old")
    os.makedirs(out)
    torch.save(dict(saved, model=dict(saved["model"], **branch), semantic=False), os.path.join(out, "checkpoint.pt"))
    messages = []
    train(tiny_corpus, out, steps=saved["step"] + 1, batch_size=2, crop=32, progress=False, log=messages.append)
    assert "added or removed since" in messages[0] and "resumed from step %d" % saved["step"] in messages[1]
    with_features = str(tmp_path / "features.pt")
    torch.save(dict(saved, model=dict(saved["model"], **branch), semantic=True), with_features)
    with pytest.raises(ValueError, match="trained with the detector's features"):
        load_model(with_features)
    with pytest.raises(ValueError, match="trained with the detector's features"):
        train(tiny_corpus, str(tmp_path / "init"), steps=saved["step"] + 1, batch_size=2, crop=32, progress=False,
              log=lambda m: None, init=with_features)


def test_parallel_batches_are_the_numbered_batches_whatever_the_workers(tiny_corpus):
    """--workers: batch k comes from (seed, k) alone, so 1 or 2 worker processes and a resume at
    step k all see the batches a single process would make."""
    from engine.train.data import ParallelBatches, numbered_batch

    images = load_corpus(tiny_corpus)
    serial = [numbered_batch(BatchMaker(images, crop=32, seed=5), k, 3) for k in range(4, 8)]
    for workers in (1, 2):
        stream = ParallelBatches(BatchMaker(images, crop=32, seed=5), 3, workers, start=4)
        try:
            made = [stream.next() for _ in range(4)]
        finally:
            stream.close()
        for a, b in zip(serial, made):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(serial[0]["l"], serial[1]["l"])


def test_a_run_with_workers_trains_the_same_whatever_their_number(tiny_corpus, tmp_path):
    """(and not on the in-process stream: the workers did make its batches)"""
    weights = []
    for workers in (1, 2, 0):
        out = str(tmp_path / ("w%d" % workers))
        train(tiny_corpus, out, steps=2, batch_size=2, crop=32, checkpoint_every=2, workers=workers,
              progress=False, log=lambda m: None)
        weights.append(load_model(os.path.join(out, "checkpoint.pt"))[0].state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
