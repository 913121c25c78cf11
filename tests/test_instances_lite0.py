"""Instance-aware colorization on the pretrained-encoder network (engine/models/fusion_lite0.py,
engine/train/instances_lite0.py): the fused head against the full head, its ONNX export, both
training stages on real corpus photos with the real encoder, and the engine's pipeline with a
fused head built from the shipped heads (a drawn mask changes its own region only)."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.instance_aware import FUSED_HEAD_INPUTS, FusedModel  # noqa: E402
from engine.models.efficientnet import FEATURE_CHANNELS  # noqa: E402
from engine.models.fusion_lite0 import DEFAULT_STAGES, LiteFusionHead, export_fused_head  # noqa: E402
from engine.models.hintnet import DECODER_STAGES, HintHead  # noqa: E402
from engine.pipeline import Colorizer  # noqa: E402
from tests.helpers import CORPUS, VAL, need_data, needs_val  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADS = [os.path.join(ROOT, "tools", "checkpoints", n) for n in ("tinct-lite0.pt", "tinct-lite0-seed1.pt")]
PHOTOS = ("coco_000000000025.jpg", "coco_000000000036.jpg", "coco_000000000049.jpg")


def _inputs(n=1, h=64, w=96, k=2, s=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(n, c, h // st, w // st, generator=g) for c, st in zip(FEATURE_CHANNELS, (4, 8, 16, 32))]
    full = tuple(feats) + (torch.rand(n, 1, h, w, generator=g) * 100, torch.zeros(n, 2, h, w),
                           torch.zeros(n, 1, h, w), torch.zeros(n, GLOBAL_DIM), torch.zeros(n, 3, h, w))
    inst_feats = [torch.randn(n, k, c, s // st, s // st, generator=g)
                  for c, st in zip(FEATURE_CHANNELS, (4, 8, 16, 32))]
    inst = tuple(inst_feats) + (torch.rand(n, k, 1, s, s, generator=g) * 100, torch.zeros(n, k, 2, s, s),
                                torch.zeros(n, k, 1, s, s), torch.zeros(n, k, 4))
    return full, inst


@pytest.fixture(scope="module")
def fresh():
    torch.manual_seed(0)
    return LiteFusionHead(HintHead()).eval()


def test_without_instances_the_fused_head_is_the_full_head(fresh):
    full, inst = _inputs()
    with torch.no_grad():
        ab, dist = fresh.full(*full)
        ab2, dist2 = fresh(*full, *inst)  # every box empty: unused slots
    assert torch.equal(ab, ab2) and torch.equal(dist, dist2)
    assert fresh.stages == DEFAULT_STAGES == DECODER_STAGES[:-1]


def test_a_box_changes_the_colors_and_the_whole_photo_as_its_crop_changes_nothing(fresh):
    full, inst = _inputs(h=64, w=64, s=64)
    boxes = inst[-1].clone()
    boxes[0, 0] = torch.tensor([0.1, 0.1, 0.6, 0.9])
    with torch.no_grad():
        ab = fresh.full(*full)[0]
        moved = fresh(*full, *inst[:-1], boxes)[0]
        # one instance: the whole photo, its crop the photo itself -> the same features fused
        same = tuple(t[:, None] for t in full[:4]) + (full[4][:, None], full[5][:, None], full[6][:, None],
                                                      torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))
        whole = fresh(*full, *same)[0]
    assert (moved - ab).abs().max() > 1e-3
    assert (whole - ab).abs().max() < 1e-3


def test_only_the_fusion_layers_learn_and_get_gradients(fresh):
    model = LiteFusionHead(HintHead(), stages=("dec16", "dec4"))
    assert list(model.fusion) == ["dec16", "dec4"]
    for p in list(model.full.parameters()) + list(model.instance.parameters()):
        p.requires_grad_(False)
    full, inst = _inputs()
    boxes = inst[-1].clone()
    boxes[0, :] = torch.tensor([0.2, 0.2, 0.8, 0.8])
    ab, _ = model(*full, *inst[:-1], boxes)
    ab.abs().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())
    with pytest.raises(ValueError, match="unknown decoder stages"):
        LiteFusionHead(HintHead(), stages=("conv3",))


def test_onnx_fused_head_matches_torch_for_any_count_and_crop_side(fresh, tmp_path):
    import onnxruntime as ort

    path = export_fused_head(fresh, str(tmp_path / "fused.onnx"))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(FUSED_HEAD_INPUTS)
    for k, s, (h, w) in ((1, 64, (64, 96)), (3, 96, (128, 96))):
        full, inst = _inputs(h=h, w=w, k=k, s=s, seed=k)
        boxes = torch.rand(1, k, 4) * 0.5
        boxes[..., 2:] += 0.5
        with torch.no_grad():
            ab, dist = fresh(*full, *inst[:-1], boxes)
        feeds = dict(zip(FUSED_HEAD_INPUTS, [t.numpy() for t in full] + [t[0].numpy() for t in inst[:-1]]
                         + [boxes[0].numpy()]))
        ab2, dist2 = sess.run(None, feeds)
        assert np.abs(ab2 - ab.numpy()).max() < 1e-3 and np.abs(dist2 - dist.numpy()).max() < 1e-3


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    need_data(CORPUS)
    d = tmp_path_factory.mktemp("corpus")
    for name in PHOTOS:
        shutil.copy(os.path.join(CORPUS, name), d / name)
    return str(d)


def test_both_stages_train_resume_and_export_for_the_engine(corpus, tmp_path):
    from engine.cli import main

    runs = tmp_path / "runs"
    common = ["--model", "lite0", "--corpus", corpus, "--checkpoint-every", "2", "--threads", "2",
              "--box-cache", str(runs / "boxes.npz"), "--full-checkpoint", HEADS[0]]
    assert main(["train", "--stage", "instance", "--out", str(runs / "inst"), "--steps", "2",
                 "--batch-size", "4"] + common) == 0
    inst_ckpt = runs / "inst" / "checkpoint.pt"
    state = torch.load(inst_ckpt, weights_only=False)
    assert state["stage"] == "instance" and state["model_name"] == "lite0" and state["step"] == 2
    assert main(["train", "--stage", "instance", "--out", str(runs / "inst"), "--steps", "4",
                 "--batch-size", "4"] + common) == 0  # resumes at step 2
    assert torch.load(inst_ckpt, weights_only=False)["step"] == 4
    assert main(["train", "--stage", "fusion", "--out", str(runs / "fusion"), "--steps", "2", "--batch-size", "2",
                 "--instance-checkpoint", str(inst_ckpt)] + common) == 0
    fusion_state = torch.load(runs / "fusion" / "checkpoint.pt", weights_only=False)
    assert fusion_state["stages"] == list(DEFAULT_STAGES) and fusion_state["instance_step"] == 4
    # the heads stayed frozen: the fused model's full head is still the shipped head
    shipped = torch.load(HEADS[0], weights_only=False)["head"]
    for name, value in shipped.items():
        assert torch.equal(fusion_state["model"]["full." + name], value), name
    out = tmp_path / "export" / "tinct-lite0-instances.onnx"
    assert main(["export", "--fused", str(runs / "fusion" / "checkpoint.pt"), "-o", str(out)]) == 0
    assert (tmp_path / "export" / "tinct-lite0-encoder.onnx").exists()
    fused = FusedModel(str(out))
    assert fused.pretrained and fused.max_instances == 8 and fused.inst_size == 128
    assert fused.runtime.metadata["full_train_step"] == str(torch.load(HEADS[0], weights_only=False)["step"])
    assert [fused.crop_side(256, 256, k) for k in (1, 4, 5, 8)] == [128, 128, 96, 64]


def test_fusion_windows_keep_the_engine_crop_side_and_boxes(corpus, tmp_path):
    from engine.train.instances import load_photos_with_boxes
    from engine.train.instances_lite0 import FUSION_SIDE, FusionBatches, fusion_cache, lite0_crop_side
    from engine.models.efficientnet import Encoder, load_pretrained

    items = [it for it in load_photos_with_boxes(corpus, str(tmp_path / "boxes.npz"), progress=False) if len(it[1])]
    assert items, "the test photos have detector boxes"
    folder = fusion_cache(items, str(tmp_path / "windows"), Encoder(load_pretrained()).eval(), 2, progress=False)
    batches = FusionBatches(folder)
    b = batches.batch(3)
    k, s = b["inst_l"].shape[1], b["inst_l"].shape[-1]
    assert b["l"].shape == (3, 1, FUSION_SIDE, FUSION_SIDE) and b["f32"].shape[-1] == FUSION_SIDE // 32
    assert b["inst_f4"].shape[-1] == s // 4 and b["boxes"].shape == (3, k, 4)
    used = (b["boxes"][..., 2] > b["boxes"][..., 0])
    assert used.any(1).all() and ((b["boxes"] >= 0) & (b["boxes"] <= 1)).all()
    assert s == lite0_crop_side(FUSION_SIDE, FUSION_SIDE, int(used.sum(1).max())) or s in (128, 96, 64)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def lite0_models(tmp_path_factory):
    """(full.onnx, fused.onnx) from the shipped seed-0 head; the instance head is the shipped seed-1
    head and the instances weigh more than the background inside their boxes, so fusion shows."""
    from engine.train.export import export_pretrained, write_metadata

    d = tmp_path_factory.mktemp("lite0")
    full_path = export_pretrained(HEADS[0], str(d / "tinct-lite0.onnx"))
    heads = [torch.load(p, weights_only=False) for p in HEADS]
    full, inst = HintHead(), HintHead()
    full.load_state_dict(heads[0]["head"], strict=False)
    inst.load_state_dict(heads[1]["head"], strict=False)
    model = LiteFusionHead(full, inst).eval()
    with torch.no_grad():
        for layer in model.fusion.values():
            layer.instance_weight.net[-1].bias.fill_(3.0)
    fused_path = export_fused_head(model, str(d / "tinct-lite0-instances.onnx"))
    write_metadata(fused_path, {"encoder": "tinct-lite0-encoder.onnx", "size_multiple": "32", "inst_size": "128",
                                "max_instances": "8", "full_train_step": str(heads[0]["step"])})
    return full_path, fused_path


@needs_val
def test_a_drawn_mask_changes_only_the_region_it_covers(lite0_models):
    with Image.open(os.path.join(VAL, "coco_000000002006.jpg")) as im:
        photo = np.asarray(im.convert("L"))
    c = Colorizer(model_path=lite0_models[0], fused_model_path=lite0_models[1])
    h, w = photo.shape
    box = (w // 4, h // 4, w // 2, 3 * h // 4)
    mask = np.zeros((h, w), bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    res = c.colorize(photo, instances=[mask])
    assert res.info["instances"]["model"] == "fused" and res.info["instances"]["used"] == 1
    alone = Colorizer(model_path=lite0_models[0]).colorize(photo)
    np.testing.assert_array_equal(c.colorize(photo, instances="none").ab, alone.ab)
    diff = np.abs(res.ab - alone.ab).sum(-1)
    margin = h // 8  # two cells of the coarsest fused stage at the working size, then the edge-aware upsampling
    near = np.zeros((h, w), bool)
    near[max(0, box[1] - margin):box[3] + margin, max(0, box[0] - margin):box[2] + margin] = True
    assert diff[mask].mean() > 2.0, diff[mask].mean()
    # beyond the margin nothing a viewer could see (|da| + |db| under 1.5, JND is about 2.3 in dE)
    assert diff[~near].max() < 1.5 and diff[~near].mean() < 0.01 * diff[mask].mean(), (
        diff[~near].max(), diff[~near].mean(), diff[mask].mean())


@needs_val
def test_a_hint_edit_reuses_the_photo_and_crop_features(lite0_models):
    with Image.open(os.path.join(VAL, "coco_000000002006.jpg")) as im:
        photo = np.asarray(im.convert("L"))
    c = Colorizer(model_path=lite0_models[0], fused_model_path=lite0_models[1])
    mask = np.zeros(photo.shape, bool)
    mask[100:300, 100:400] = True
    first = c.colorize(photo, instances=[mask])
    hints = np.zeros(photo.shape + (4,), np.uint8)
    hints[200:204, 200:204] = (200, 30, 30, 255)
    again = c.colorize(photo, hints=hints, instances=[mask])
    assert c.fused.runtime.feature_cache_hits == 2  # the photo's and the crops' features, both reused
    assert np.abs(again.ab - first.ab).max() > 1.0


@needs_val
def test_a_gimp_selection_reaches_the_fused_head_through_a_real_engine(lite0_models):
    """What the plug-in sends for a selection (an instance mask buffer) over the engine's socket."""
    from tests.test_server_support import Engine, hello, image_frame, read_until

    with Image.open(os.path.join(VAL, "coco_000000002006.jpg")) as im:
        photo = np.ascontiguousarray(np.asarray(im.convert("L")))
    mask = np.zeros(photo.shape, np.uint8)
    mask[60:200, 80:240] = 255
    engine = Engine()
    engine.env.update(TINCT_MODEL=lite0_models[0], TINCT_FUSED_MODEL=lite0_models[1])
    engine.start()
    try:
        s = engine.connect()
        assert hello(s, engine.token)["features"]["instances"]
        s.sendall(image_frame(engine.token, 1, photo, instances=[(mask, {})],
                              options={"render": 8, "instances": "selection"}))
        h, _ = read_until(s, 1)
        assert h["type"] == "result", h
        inst = h["info"]["instances"]
        assert inst["mode"] == "masks" and inst["model"] == "fused" and inst["boxes"] == [[80.0, 60.0, 240.0, 200.0]]
        s.close()
    finally:
        engine.stop()
