"""Damage detection: the shipped detector on onnxruntime, `tinct detect-damage`, `--damage auto`,
`tinct eval-damage`, the engine's detect_damage request, a tiny real training run, and the
plug-in core's painting of the `Tinct damage` layer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import EXAMPLES, ROOT, copy_corpus

from engine.color import rgb_to_lab
from engine.damage_synth import NEGATIVE_KINDS, DamageSynth
from engine.detect_damage import Detector, windows


def tinct(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine"] + list(args), capture_output=True, text=True,
                          cwd=cwd or ROOT, env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def old_print(tmp_path_factory):
    """An example photo made an old print with cracks, scratches and dust: (path, uint8 gray, truth, unsure)."""
    rgb = np.asarray(Image.open(os.path.join(EXAMPLES, "great_wall_bw.png")).convert("RGB"))
    old, truth, unsure = DamageSynth(np.random.default_rng(5)).sample(
        rgb_to_lab(rgb)[..., 0], damaged=True, negatives=False, kinds=["crack", "scratch", "dust"], unsure=True)
    gray = np.clip(np.round(old * 2.55), 0, 255).astype(np.uint8)
    path = str(tmp_path_factory.mktemp("print") / "old.png")
    Image.fromarray(gray).save(path)
    return path, gray, truth, unsure


def test_the_shipped_detector_finds_synthetic_damage(detector, old_print):
    _, gray, truth, unsure = old_print
    found = detector.detect(gray) & ~unsure  # (as tinct eval-damage counts)
    hit = (found & truth).sum()
    precision, recall = hit / max(found.sum(), 1), hit / truth.sum()
    print("precision %.3f recall %.3f" % (precision, recall))  # shipped model: 0.94, 0.81
    assert precision > 0.85 and recall > 0.7


def test_clean_photos_and_thin_scene_lines_are_mostly_left_alone(detector):
    l = rgb_to_lab(np.asarray(Image.open(os.path.join(EXAMPLES, "dam_bw.png")).convert("RGB")))[..., 0]
    clean = detector.probability_l(l) >= detector.threshold
    lines, truth = DamageSynth(np.random.default_rng(1)).sample(l, damaged=False, negatives=list(NEGATIVE_KINDS))
    assert not truth.any()
    flagged = detector.probability_l(lines) >= detector.threshold
    print("flagged: clean %.4f, with hair/branches/wires/rigging/text/clipping %.4f" % (clean.mean(), flagged.mean()))
    assert clean.mean() < 0.005 and flagged.mean() < 0.003  # shipped model: 0.06 %, 0.14 %


def test_windows_cover_every_pixel_once_and_tiles_agree_with_one_pass(detector):
    h, w = 1100, 1500
    seen = np.zeros((h, w), int)
    for (y0, y1, x0, x1), (wy0, wy1, wx0, wx1) in windows(h, w):
        assert wy0 <= y0 < y1 <= wy1 and wx0 <= x0 < x1 <= wx1 and wy1 - wy0 <= 1024 + 64 and wx1 - wx0 <= 1024 + 64
        seen[y0:y1, x0:x1] += 1
    assert (seen == 1).all()
    rgb = np.asarray(Image.open(os.path.join(EXAMPLES, "great_wall_bw.png")).convert("RGB").resize((w, h)))
    from engine.pipeline import photo_l_rows

    tiled = detector.probability(rgb)
    whole = detector.probability_l(photo_l_rows(rgb, 0, h))
    assert ((tiled >= 0.5) != (whole >= 0.5)).mean() < 1e-4


def test_detect_damage_cli_writes_a_mask_that_damage_reads_back(detector, old_print, tmp_path):
    path, gray, _, _ = old_print
    out = str(tmp_path / "mask.png")
    r = tinct("detect-damage", path, "-o", out, "--threshold", "0.4")
    assert r.returncode == 0, r.stderr
    from engine.commands import load_damage
    from engine.imageio import load_image

    mask = load_damage(out, gray, path)
    assert (mask == detector.detect(gray, 0.4)).mean() > 0.999
    assert "%d damaged pixels" % mask.sum() in r.stdout
    # and the colorizer restores exactly those pixels
    r = tinct("colorize", path, "--damage", out, "-o", str(tmp_path / "c.png"))
    assert r.returncode == 0 and "%d damaged pixels restored" % mask.sum() in r.stdout, r.stderr
    assert load_image(str(tmp_path / "c.png")).shape[:2] == gray.shape


@pytest.mark.parametrize("args, words", [(["--threshold", "1.5"], "between 0 and 1"),
                                         (["--damage-model", "nope.onnx"], "nope.onnx is missing")])
def test_detect_damage_cli_bad_input_is_one_line_exit_2(old_print, args, words):
    r = tinct("detect-damage", old_print[0], *args)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_colorize_and_batch_with_damage_auto(old_print, tmp_path):
    path, gray, _, _ = old_print
    r = tinct("colorize", path, "--damage", "auto", "-o", str(tmp_path / "c.png"))
    assert r.returncode == 0, r.stderr
    restored = int(r.stdout.split("damaged pixels restored")[0].split()[-1])
    assert restored == Detector().detect(gray).sum() > 0
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(gray).save(str(src / "old.png"))
    r = tinct("batch", str(src), str(tmp_path / "out"), "--damage-dir", "auto")
    assert r.returncode == 0 and os.path.exists(str(tmp_path / "out" / "old.png")), r.stderr


def test_eval_damage_reports_every_figure(tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    for name in ("great_wall_bw.png", "dam_bw.png"):
        Image.open(os.path.join(EXAMPLES, name)).convert("RGB").save(str(folder / name))
    r = tinct("eval-damage", str(folder), "--json", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr
    e = json.load(open(str(tmp_path / "e.json")))
    assert e["photos"] == 2 and 0 < e["mask"]["f1"] <= e["mask"]["f1_1px"] <= 1
    assert 0 <= e["flagged"]["clean"] < 0.05 and e["restoration_psnr"]["true_mask"] > e["restoration_psnr"]["damaged"]
    assert "F1" in r.stdout and "detected mask" in r.stdout


def test_engine_detect_damage_request_matches_the_detector(old_print, tmp_path):
    from tests.test_server_support import Engine, hello, image_frame, read_until

    path, gray, _, _ = old_print
    e = Engine().start()
    try:
        s = e.connect()
        h = hello(s, e.token)
        assert h["features"]["detect_damage"] is True
        s.sendall(image_frame(e.token, 1, gray, options={}, extra={"type": "detect_damage", "threshold": 0.4}))
        reply, bufs = read_until(s, 1)
        assert reply["type"] == "damage", reply
        mask = bufs[reply["mask"]["buffer"]]
        assert mask.shape == gray.shape and set(np.unique(mask)) <= {0, 255}
        assert ((mask > 0) == Detector().detect(gray, 0.4)).mean() > 0.999
        assert reply["info"]["damaged_pixels"] == (mask > 0).sum()
        s.sendall(image_frame(e.token, 2, gray, options={}, extra={"type": "detect_damage", "threshold": 3}))
        err, _ = read_until(s, 2)
        assert err["code"] == "bad_request" and "threshold" in err["message"]
        s.close()
        # tinct colorize --engine --damage auto: the engine finds the damage, then restores it
        r = subprocess.run([sys.executable, "-m", "engine", "colorize", path, "--engine", "--damage", "auto", "-o",
                            str(tmp_path / "e.png")], capture_output=True, text=True, cwd=ROOT, env=e.env)
        assert r.returncode == 0, r.stderr
        assert "%d damaged pixels restored" % Detector().detect(gray).sum() in r.stdout, r.stdout
    finally:
        e.stop()


def test_a_tiny_training_run_resumes_and_exports_a_working_onnx(tmp_path):
    import torch

    from engine.train.damage import export_damage, load_damage_model, train_damage

    (tmp_path / "corpus").mkdir()
    corpus = copy_corpus(tmp_path / "corpus", 3)
    out = str(tmp_path / "run")
    quiet = dict(progress=False, log=lambda m: None)
    train_damage(corpus, out, steps=2, batch_size=2, crop=32, checkpoint_every=1, widths=(4, 8), threads=None, **quiet)
    messages = []
    ckpt = train_damage(corpus, out, steps=3, batch_size=2, crop=32, checkpoint_every=1, threads=None, progress=False,
                        log=messages.append)
    assert any("resumed damage stage from step 2" in m for m in messages)
    model, state = load_damage_model(ckpt)
    assert state["step"] == 3 and state["config"] == {"widths": [4, 8]}
    onnx_path = export_damage(ckpt, str(tmp_path / "d.onnx"))
    d = Detector(onnx_path)
    l = np.random.default_rng(0).uniform(0, 100, (37, 53)).astype(np.float32)
    p = d.probability_l(l)
    with torch.no_grad():
        lp = np.pad(l, ((0, 3), (0, 3)), mode="reflect")
        ref = torch.sigmoid(model(torch.from_numpy(lp)[None, None]))[0, 0, :37, :53].numpy()
    assert p.shape == l.shape and np.abs(p - ref).max() < 1e-4
    assert d.runtime.metadata["task"] == "damage" and d.runtime.metadata["size_multiple"] == "4"
    # the CLI writes into a folder that does not exist yet, as `tinct export` does
    from engine.cli import main

    new = tmp_path / "new" / "d.onnx"
    assert main(["export-damage", ckpt, "-o", str(new), "--threshold", "0.7"]) == 0
    assert Detector(str(new)).runtime.metadata["task"] == "damage"


def test_pristine_samples_keep_the_photo_sharp_and_clean_unless_damaged():
    from engine.train.damage import DamageBatchMaker

    l = rgb_to_lab(np.asarray(Image.open(os.path.join(EXAMPLES, "dam_bw.png")).convert("RGB")))[..., 0]
    plain, truth = DamageSynth(np.random.default_rng(3)).sample(l, damaged=False, negatives=False, aged=False)
    assert not truth.any()
    same = DamageSynth(np.random.default_rng(3))
    scanned = same.scan(np.clip(l, 0, 100).astype(np.float32), same.scan_settings())
    assert np.abs(plain - scanned).max() < 1e-4  # nothing but the scan touched it
    aged, _ = DamageSynth(np.random.default_rng(3)).sample(l, damaged=False, negatives=False)
    assert np.abs(aged - l).mean() > 1  # the default still ages
    # the training batches: all pristine or none, as the share says
    ls = [np.clip(np.round(l * 2.55), 0, 255).astype(np.uint8)]
    for share in (0.0, 1.0):
        maker = DamageBatchMaker(ls, crop=32, seed=0, pristine=share)
        calls = []
        real = maker.synth.sample
        maker.synth.sample = lambda *a, **k: calls.append(k["aged"]) or real(*a, **k)
        maker.batch(8)
        assert calls == [share == 0.0] * 8
    r = tinct("train-damage", "--pristine", "1.5", "--corpus", str(EXAMPLES), "--out", os.devnull)
    assert r.returncode != 0 and "--pristine is a share between 0 and 1" in r.stderr and "Traceback" not in r.stderr


def test_clipped_exposure_is_scene_content_and_its_training_share_is_kept():
    """A blown sky or a white shirt at the border looks like torn-off paper: `clipped` flattens part
    of the scene and is never damage; `--clipped` sets the share of training samples it happens to."""
    from engine.train.damage import DamageBatchMaker

    l = rgb_to_lab(np.asarray(Image.open(os.path.join(EXAMPLES, "dam_bw.png")).convert("RGB")))[..., 0]
    flat = [DamageSynth(np.random.default_rng(s)).clip_exposure(l) for s in range(6)]
    shares = [max((f >= 100).mean(), (f <= 0).mean()) for f in flat]
    assert all(0.04 <= s <= 0.4 for s in shares), shares  # 5-35 % of the scene, clipped flat
    old, truth = DamageSynth(np.random.default_rng(0)).sample(l, damaged=False, negatives=["clipped"], aged=False)
    assert not truth.any() and (old >= 99).mean() + (old <= 1).mean() > 0.04
    ls = [np.clip(np.round(l * 2.55), 0, 255).astype(np.uint8)]
    for share, expected in ((0.0, 0), (1.0, 8)):
        maker = DamageBatchMaker(ls, crop=32, seed=0, clipped=share)
        maker.synth.p_negatives = 0.0  # (a scene-content draw may clip too: count the share's alone)
        calls = []
        real = maker.synth.clip_exposure
        maker.synth.clip_exposure = lambda x: calls.append(1) or real(x)
        maker.batch(8)
        assert len(calls) == expected
    r = tinct("train-damage", "--clipped", "-0.1", "--corpus", str(EXAMPLES), "--out", os.devnull)
    assert r.returncode != 0 and "--clipped is a share between 0 and 1" in r.stderr and "Traceback" not in r.stderr


def test_training_refuses_a_folder_of_another_network(tmp_path):
    import torch

    from engine.train.damage import train_damage

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"task": "restore"}, str(out / "checkpoint.pt"))
    with pytest.raises(ValueError, match="another network"):
        train_damage(str(EXAMPLES), str(out), steps=1, threads=None, progress=False)


def test_plugin_core_paints_found_damage_and_keeps_the_users_paint():
    sys.path.insert(0, os.path.join(ROOT, "plugin"))
    from tinct_core.detect import paint, placed_mask
    from tinct_core.roles import LayerInfo

    photo = LayerInfo(None, "photo", x=10, y=5, width=4, height=3)
    area = LayerInfo(None, "Tinct damage", x=9, y=5, width=6, height=4)  # the user's layer, larger and offset
    mask = bytes([0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 255])
    placed = placed_mask(mask, photo, area)
    assert placed == bytes([0, 0, 255, 255, 0, 0] + [0] * 6 + [0, 0, 0, 0, 255, 0] + [0] * 6)
    base = bytearray(b"\x00\x00\x00\x00" * 24)
    base[0:4] = b"\x01\x02\x03\xff"  # painted by the user, outside the photo
    out = paint(base, placed, b"\xff\x00\x00\xff")
    assert out[0:4] == b"\x01\x02\x03\xff" and out[8:16] == b"\xff\x00\x00\xff" * 2 and out[64:68] == b"\xff\x00\x00\xff"
    assert out.count(b"\xff\x00\x00\xff") == 3


def test_held_out_clean_photos_come_at_vals_sizes():
    """tools/clean_photos.py: the false-alarm check's photos are as large as val's (the flagged share
    depends on the size), the whole frame at 288 and a 500 x 500 center crop."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("clean_photos", os.path.join(ROOT, "tools", "clean_photos.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    wide = Image.new("RGB", (1920, 1080))
    wide.paste((255, 0, 0), (0, 0, 960, 1080))  # the left half red: the crop keeps the center
    small, square = tool._sized(wide, 288), tool._sized(wide, 500)
    assert small.size == (512, 288) and square.size == (500, 500)
    center = np.asarray(square)
    assert center[:, :240, 0].min() == 255 and center[:, 260:, 0].max() == 0
    assert len(set(tool.PHOTOS)) == len(tool.PHOTOS) == 34
