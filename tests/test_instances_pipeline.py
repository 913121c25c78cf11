"""Instance-aware colorization end to end: the pipeline in auto / none / mask modes,
the CLI's --instances, and `tinct eval --instances`, with a tiny fused model made
here (fresh small networks, fusion weights made to matter) and the real detector
on real validation photos."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from engine import TinctError  # noqa: E402
from engine.instance_aware import FusedModel, crop_l  # noqa: E402
from engine.pipeline import Colorizer  # noqa: E402
from tests.helpers import VAL, needs_val  # noqa: E402

BUS = os.path.join(VAL, "coco_000000002006.jpg")  # a bus (hand-checked box in tests/test_detect.py)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(full.onnx, fused.onnx): the fused model's full branch is exactly full.onnx, so any
    difference between modes is the instance branch and the fusion at work."""
    from engine.models.colornet import ColorNet
    from engine.models.config import CONFIGS
    from engine.models.fusion import InstanceFusionNet, export_fused_onnx
    from engine.train.export import export_onnx

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    full = ColorNet(CONFIGS["small"]).eval()
    with torch.no_grad():  # a fresh network's colors barely vary; make feature changes show in ab
        full.ab_head.weight.mul_(40.0)
    ckpt = str(d / "full.pt")
    torch.save({"model": full.state_dict(), "model_name": "small", "config": CONFIGS["small"].to_dict(), "step": 0},
               ckpt)
    full_path = export_onnx(ckpt, str(d / "full.onnx"))
    instance = ColorNet(CONFIGS["small"]).eval()  # another network: its features differ from the full one's
    model = InstanceFusionNet.from_full(full, instance).eval()
    with torch.no_grad():
        for layer in model.fusion.values():  # instances weigh more than the background inside their boxes
            layer.instance_weight.net[-1].bias.fill_(3.0)
    fused_path = export_fused_onnx(model, str(d / "fused.onnx"), dynamic_instances=True,
                                   metadata={"max_instances": "8", "inst_size": "64", "stage": "fusion"})
    return full_path, fused_path


@pytest.fixture(scope="module")
def colorizer(models):
    return Colorizer(model_path=models[0], fused_model_path=models[1])


@pytest.fixture(scope="module")
def bus():
    with Image.open(BUS) as im:
        return np.asarray(im.convert("L"))


def _box_mask(h, w, box):
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


@needs_val
def test_auto_is_the_default_with_a_fused_model_and_finds_the_bus(colorizer, bus):
    res = colorizer.colorize(bus)
    inst = res.info["instances"]
    assert inst["mode"] == "auto" and inst["model"] == "fused"
    assert 1 <= inst["used"] <= 8 and inst["labels"][0] == "bus"
    h, w = bus.shape
    boxes = np.array(inst["boxes"])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    none = colorizer.colorize(bus, instances="none")
    assert none.info["instances"] == {"mode": "none", "model": "full", "found": 0, "used": 0, "boxes": [],
                                      "messages": []}
    assert np.abs(res.ab - none.ab).max() > 1.0  # the instance branch changed the colors
    assert res.render().shape == (h, w, 3)


@needs_val
@needs_val
def test_a_hint_edit_on_the_same_photo_does_not_detect_again(models, bus):
    c = Colorizer(model_path=models[0], fused_model_path=models[1])
    calls = []
    real = c.detector.detect
    c.detector.detect = lambda *a, **k: calls.append(1) or real(*a, **k)
    first = c.colorize(bus, instances="auto")
    hints = np.zeros(bus.shape + (4,), np.uint8)
    hints[100:104, 100:104] = (200, 40, 40, 255)
    again = c.colorize(bus, hints=hints, instances="auto")
    assert len(calls) == 1 and again.info["instances"]["boxes"] == first.info["instances"]["boxes"]
    c.colorize(np.ascontiguousarray(bus[:, ::-1]), instances="auto")  # another photo: detected
    assert len(calls) == 2


def test_none_mode_is_exactly_the_full_network(models, colorizer, bus):
    alone = Colorizer(model_path=models[0]).colorize(bus)  # no fused model: instances default to none
    assert alone.info["instances"]["mode"] == "none"
    np.testing.assert_array_equal(colorizer.colorize(bus, instances="none").ab, alone.ab)


def test_fusion_changes_colors_mostly_inside_the_box(colorizer):
    rng = np.random.default_rng(0)
    photo = (rng.random((240, 320)) * 255).astype(np.uint8)
    box = (40, 60, 140, 180)  # x0, y0, x1, y1
    res = colorizer.colorize(photo, instances=[_box_mask(240, 320, box)])
    assert res.info["instances"]["boxes"] == [[40.0, 60.0, 140.0, 180.0]]
    assert res.info["instances"]["model"] == "fused"
    diff = np.abs(res.ab - colorizer.colorize(photo, instances="none").ab).sum(-1)
    inside = _box_mask(240, 320, box)
    far = ~_box_mask(240, 320, (20, 40, 160, 200))
    assert diff[inside].mean() > 3 * diff[far].mean(), (diff[inside].mean(), diff[far].mean())


def test_empty_and_outside_masks_are_skipped_with_warnings(colorizer):
    photo = np.full((120, 160), 90, np.uint8)
    photo[30:90, 40:120] = 200
    good = _box_mask(120, 160, (40, 30, 120, 90))
    empty = np.zeros((120, 160), bool)
    outside = (np.ones((20, 20), bool), 200, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = colorizer.colorize(photo, instances=[empty, good, outside])
    inst = res.info["instances"]
    assert inst["used"] == 1 and inst["model"] == "fused" and len(caught) == 2
    assert any("mask 1: empty" in m for m in inst["messages"])
    assert any("mask 3: outside the image" in m for m in inst["messages"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_bad = colorizer.colorize(photo, instances=[empty, outside])
    assert only_bad.info["instances"]["model"] == "full" and only_bad.info["instances"]["used"] == 0
    assert "full network colorized the photo alone" in only_bad.info["instances"]["messages"][-1]
    np.testing.assert_array_equal(only_bad.ab, colorizer.colorize(photo, instances="none").ab)


def test_more_masks_than_slots_keep_the_largest(colorizer):
    masks = [_box_mask(100, 400, (k * 40, 0, k * 40 + 30, 10 + 8 * k)) for k in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = colorizer.colorize(np.full((100, 400), 128, np.uint8), instances=masks)
    inst = res.info["instances"]
    assert inst["used"] == 8 and inst["found"] == 10
    assert [b[0] for b in inst["boxes"]] == [k * 40 for k in range(2, 10)]
    assert any("8 largest used (2 dropped)" in m for m in inst["messages"])


def test_no_objects_found_falls_back_to_the_full_network(colorizer):
    photo = np.tile(np.linspace(60, 200, 300).astype(np.uint8), (200, 1))  # a smooth gradient, no object
    res = colorizer.colorize(photo, instances="auto")
    inst = res.info["instances"]
    assert inst["mode"] == "auto" and inst["model"] == "full" and inst["used"] == 0
    assert "no objects found" in inst["messages"][0]
    np.testing.assert_array_equal(res.ab, colorizer.colorize(photo, instances="none").ab)


def test_without_a_fused_model_auto_says_so_and_runs_the_full_network(models):
    c = Colorizer(model_path=models[0])
    assert c.fused_model_path is None and c.fused is None
    photo = np.full((64, 64), 100, np.uint8)
    with pytest.warns(UserWarning, match="no instance-aware model"):
        res = c.colorize(photo, instances="auto")
    assert res.info["instances"]["model"] == "full"
    assert "no instance-aware model installed" in res.info["instances"]["messages"][0]
    with pytest.raises(TinctError, match="instances must be"):
        c.colorize(photo, instances="everything")


def test_a_plain_model_is_refused_as_fused(models):
    with pytest.raises(TinctError, match="not an instance-aware"):
        Colorizer(model_path=models[0], fused_model_path=models[0]).colorize(
            np.full((64, 64), 100, np.uint8), instances=[np.ones((64, 64), bool)])


def test_hints_inside_a_box_feed_its_crop_and_crops_track_the_photo(models):
    fused = FusedModel(models[1])
    assert fused.dynamic_slots and fused.max_instances == 8 and fused.inst_size == 64
    assert fused.crop_side(256, 344, 1) == 64 and fused.crop_side(64, 400, 1) == 64
    big = FusedModel.__new__(FusedModel)
    big.inst_size, big.pretrained = 256, False
    assert big.crop_side(256, 344, 8) == 104  # 8 crops together at most the working grid's pixels
    h, w = 200, 300
    photo = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))  # brighter to the right
    grid_ab = np.zeros((100, 150, 2), np.float32)
    grid_mask = np.zeros((100, 150), np.float32)
    grid_ab[50, 100] = (30, -20)  # inside the first box once mapped to the working grid
    grid_mask[50, 100] = 1
    boxes = np.array([[150, 60, 270, 160], [0, 0, 60, 60]], np.float32)
    inp = fused.inputs(photo, boxes, grid_ab, grid_mask, 100, 150)
    assert inp["inst_l"].shape == (2, 1, 64, 64) and inp["boxes"].shape == (2, 4)
    np.testing.assert_allclose(inp["boxes"][0], [0.5, 0.3, 0.9, 0.8], atol=1e-6)
    assert inp["inst_hint_mask"][0].sum() == 1 and inp["inst_hint_mask"][1].sum() == 0
    ys, xs = np.nonzero(inp["inst_hint_mask"][0, 0])
    np.testing.assert_allclose(inp["inst_hint_ab"][0, :, ys[0], xs[0]], (30, -20))
    assert inp["inst_l"][0].mean() > inp["inst_l"][1].mean() + 30  # the right-hand box is brighter


def test_crop_of_a_huge_region_is_decimated_not_converted_whole(monkeypatch):
    import engine.instance_aware as ia

    photo = np.tile(np.linspace(0, 1, 800, dtype=np.float32), (600, 1))
    exact = crop_l(photo, (100, 100, 700, 500), 32)
    monkeypatch.setattr(ia, "MAX_CROP_SOURCE", 10_000)
    seen = []
    real = ia.gray_to_l
    monkeypatch.setattr(ia, "gray_to_l", lambda region: seen.append(region.shape) or real(region))
    approx = crop_l(photo, (100, 100, 700, 500), 32)
    assert seen and seen[0][0] * seen[0][1] <= 4 * 10_000
    assert np.abs(approx - exact).max() < 2.0


# ----------------------------------------------------------------------------- CLI and eval


def test_cli_colorize_with_a_mask_file(models, tmp_path, capsys):
    from engine.cli import main

    photo = np.full((96, 128), 120, np.uint8)
    photo[20:70, 30:90] = 220
    Image.fromarray(photo).save(tmp_path / "p.png")
    mask = np.zeros((96, 128), np.uint8)
    mask[20:70, 30:90] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    rc = main(["colorize", str(tmp_path / "p.png"), "-o", str(out), "--model", models[0], "--fused-model", models[1],
               "--instances", str(tmp_path / "m.png")])
    assert rc == 0 and out.exists()
    assert "1 instance)" in capsys.readouterr().out
    rc = main(["colorize", str(tmp_path / "p.png"), "-o", str(out), "--model", models[0], "--fused-model", models[1],
               "--instances", "auto", str(tmp_path / "m.png")])
    assert rc == 2 and "not a mix" in capsys.readouterr().err


@needs_val
def test_eval_reports_both_modes_and_the_multi_object_photos(models, tmp_path):
    from engine.evaluate import format_table, instance_sheet, run_eval

    names = ["coco_000000002006.jpg", "kodak_kodim03.png", "coco_000000000139.jpg"]
    d = tmp_path / "val"
    d.mkdir()
    for n in names:
        os.symlink(os.path.join(VAL, n), d / n)
    c = Colorizer(model_path=models[0], fused_model_path=models[1])
    res = run_eval(str(d), hint_counts=(0, 5), methods=("tinct",), colorizer=c, progress=False,
                   instances=("auto", "none"), sheet_rows=8)
    assert set(res["methods"]) == {"tinct/auto", "tinct/none"}
    assert len(res["objects"]) == 3 and max(res["objects"]) >= 2
    multi = res["groups"]["multi"]
    assert multi["photos"] == sum(k >= 2 for k in res["objects"])
    assert multi["photos"] + res["groups"]["others"]["photos"] == 3
    # on photos without objects, auto mode is the full network: identical scores
    for i, k in enumerate(res["objects"]):
        if k == 0:
            assert res["per_photo"]["tinct/auto"][0][i] == res["per_photo"]["tinct/none"][0][i]
    table = format_table(res)
    assert "tinct/auto" in table and "two or more detected objects" in table
    sheet = instance_sheet(res["sheet"], str(tmp_path / "sheet.png"))
    with Image.open(sheet) as im:
        assert im.width == 4 * 256 and im.height == len(res["sheet"]) * (256 + 18)


def test_a_fused_model_from_another_full_checkpoint_is_flagged():
    from engine.instance_aware import pairing_problem

    assert pairing_problem({"train_step": "4000"}, {"full_train_step": "4000"}) is None
    assert "step 3800" in pairing_problem({"train_step": "4000"}, {"full_train_step": "3800"})
    assert pairing_problem({}, {"full_train_step": "3800"}) is None  # unknown: nothing to say


def test_eval_refuses_auto_without_a_fused_model(models, tmp_path, capsys):
    from engine.cli import main

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "a.png")
    assert main(["eval", str(tmp_path), "--instances", "auto,none", "--model", models[0]]) == 2
    assert "pass --fused-model" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--sheet", str(tmp_path / "s.png"), "--model", models[0]]) == 2
