"""`tinct colorize` and `tinct batch` as a user runs them (real subprocesses)."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.helpers import EXAMPLES, ROOT


def tinct(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine"] + list(args), capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def test_colorize_sample_with_hints_writes_png_beside_input(tmp_path):
    src = tmp_path / "wall.png"
    src.write_bytes(open(os.path.join(EXAMPLES, "great_wall_bw.png"), "rb").read())
    r = tinct("colorize", str(src), "--hints", os.path.join(EXAMPLES, "great_wall_hints.png"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "wall_color.png"
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == Image.open(src).size
        rgb = np.asarray(im).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 1  # not gray any more


def test_16bit_input_gives_16bit_output(tmp_path):
    g16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    r = tinct("colorize", str(tmp_path / "g16.png"), "-o", str(tmp_path / "o.png"))
    assert r.returncode == 0, r.stderr
    from engine.imageio import load_image

    out = load_image(str(tmp_path / "o.png"))
    assert out.dtype == np.uint16 and out.shape == (48, 64, 3)


def check_refused(r, *needles):
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinct: error:"), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    Image.new("L", (40, 30)).save(tmp_path / "ok.png")
    Image.new("RGBA", (20, 20)).save(tmp_path / "hints_small.png")
    check_refused(tinct("colorize", str(tmp_path / "empty.png")), "empty.png", "empty file")
    check_refused(tinct("colorize", str(tmp_path / "text.jpg")), "text.jpg", "cannot read")
    check_refused(tinct("colorize", str(tmp_path / "ok.png"), "--hints", str(tmp_path / "hints_small.png")),
                  "hints_small.png", "20x20", "40x30")
    check_refused(tinct("colorize", str(tmp_path / "ok.png"), "--reference", str(tmp_path / "text.jpg")),
                  "text.jpg", "reference")
    assert not [p for p in os.listdir(tmp_path) if "_color" in p or p.endswith(".part")]


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    r = tinct("--debug", "colorize", str(tmp_path / "empty.png"))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_batch_keeps_going_and_reports_failures(tmp_path):
    ind, outd, hintd = tmp_path / "in", tmp_path / "out", tmp_path / "hints"
    ind.mkdir()
    hintd.mkdir()
    Image.open(os.path.join(EXAMPLES, "dam_bw.png")).save(ind / "dam.jpg")
    Image.open(os.path.join(EXAMPLES, "solar_bw.png")).save(ind / "solar.png")
    (ind / "broken.png").write_bytes(b"garbage")
    hint = np.zeros(Image.open(ind / "solar.png").size[::-1] + (4,), np.uint8)
    hint[100:103, 100:103] = (200, 30, 30, 255)
    Image.fromarray(hint, "RGBA").save(hintd / "solar.png")
    r = tinct("batch", str(ind), str(outd), "--hints-dir", str(hintd))
    assert r.returncode == 2
    assert sorted(os.listdir(outd)) == ["dam.png", "solar.png"]
    assert "broken.png" in r.stderr and "1 failed" in r.stderr
    assert "2 of 3 photos colorized" in r.stdout


def test_help_teaches():
    r = tinct("colorize", "--help")
    assert r.returncode == 0 and "--hints" in r.stdout and "examples:" in r.stdout
    r = tinct("--help")
    for cmd in ("colorize", "batch", "train", "export"):
        assert cmd in r.stdout


def test_levin_method_needs_no_model(tmp_path):
    r = tinct("colorize", os.path.join(EXAMPLES, "great_wall_bw.png"), "--method", "levin",
              "--model", str(tmp_path / "missing.onnx"),
              "--hints", os.path.join(EXAMPLES, "great_wall_hints.png"), "-o", str(tmp_path / "l.png"))
    assert r.returncode == 0, r.stderr
