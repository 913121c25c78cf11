"""`tinct train --holdout N`: photos kept out of training, scored with `tinct eval`'s protocol,
and the best weights kept; a tiny real run on a handful of corpus photos."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.evaluate import run_eval  # noqa: E402
from engine.pipeline import Colorizer  # noqa: E402
from engine.train import loop  # noqa: E402
from engine.train.data import list_images  # noqa: E402
from engine.train.export import export_onnx  # noqa: E402
from engine.train.holdout import BEST, selection_score, split_paths  # noqa: E402
from tests.helpers import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def held_run(tiny_corpus, tmp_path_factory):
    """A 4-step run holding out 2 of 6 photos, scored at steps 2 and 4; records what it trained on."""
    out = str(tmp_path_factory.mktemp("run"))
    seen = []
    real_load = loop.load_images

    def recording_load(paths):
        seen.extend(paths)
        return real_load(paths)

    loop.load_images = recording_load
    try:
        loop.train(tiny_corpus, out, steps=4, batch_size=2, crop=32, checkpoint_every=2, holdout=2, eval_every=2,
                   progress=False, log=lambda m: None)
    finally:
        loop.load_images = real_load
    return out, seen


def test_the_split_depends_on_names_only_and_is_disjoint():
    paths = ["/a/photo_%03d.jpg" % i for i in range(40)]
    train, held = split_paths(paths, 7)
    assert len(held) == 7 and len(train) == 33 and not set(train) & set(held)
    assert sorted(train + held) == sorted(paths)
    # another folder, another order: the same names are held out
    moved = ["/elsewhere/" + os.path.basename(p) for p in reversed(paths)]
    assert {os.path.basename(p) for p in split_paths(moved, 7)[1]} == {os.path.basename(p) for p in held}
    assert split_paths(paths, 0) == (paths, [])
    with pytest.raises(ValueError, match="no photo to train on"):
        split_paths(paths, 40)


def test_held_out_photos_are_never_trained_on(held_run, tiny_corpus):
    _, seen = held_run
    train, held = split_paths(list_images(tiny_corpus), 2)
    assert sorted(seen) == sorted(train) and len(held) == 2
    assert not set(seen) & set(held)


def test_the_log_carries_held_out_scores_and_best_pt_keeps_the_best(held_run):
    out, _ = held_run
    lines = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [entry["step"] for entry in lines] == [2, 4]
    scores = [{0: e["heldout_0"], 10: e["heldout_10"]} for e in lines]
    assert all(np.isfinite(v) and 5 < v < 60 for s in scores for v in s.values())
    best = torch.load(os.path.join(out, BEST), map_location="cpu", weights_only=False)
    best_i = int(np.argmax([selection_score(s) for s in scores]))
    assert best["best_step"] == lines[best_i]["step"] == best["step"]
    assert selection_score({int(k): v for k, v in best["heldout"].items()}) == pytest.approx(
        selection_score(scores[best_i]), abs=1e-3)


def test_the_held_out_score_is_what_tinct_eval_measures_of_the_exported_best(held_run, tiny_corpus, tmp_path):
    """TorchRuntime in the pipeline and the exported ONNX model give the same PSNR on the same photos."""
    out, _ = held_run
    best = torch.load(os.path.join(out, BEST), map_location="cpu", weights_only=False)
    onnx_path = export_onnx(os.path.join(out, BEST), str(tmp_path / "best.onnx"))
    held = split_paths(list_images(tiny_corpus), 2)[1]
    results = run_eval(held, hint_counts=(0, 10), methods=("tinct",), colorizer=Colorizer(model_path=onnx_path),
                       progress=False)
    for n in (0, 10):
        assert results["methods"]["tinct"][n] == pytest.approx(best["heldout"][str(n)], abs=0.02)


def test_a_run_resumes_only_with_the_same_holdout(held_run, tiny_corpus):
    out, _ = held_run
    with pytest.raises(ValueError, match="--holdout 2"):
        loop.train(tiny_corpus, out, steps=6, batch_size=2, crop=32, holdout=3, progress=False, log=lambda m: None)


@pytest.mark.parametrize("args, message", [
    (["--holdout", "2", "--eval-every", "150"], "multiple of --checkpoint-every"),
    (["--holdout", "-1"], "--holdout must be 0 or more"),
    (["--holdout", "2", "--stage", "instance"], "does not take it"),
])
def test_the_cli_refuses_holdout_settings_it_cannot_honour(args, message, tiny_corpus, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "--corpus", tiny_corpus, "--out", str(tmp_path)]
                          + args, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not os.listdir(str(tmp_path))
