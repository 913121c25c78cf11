"""Instance network + fusion module (engine/models/fusion.py) and the three-stage
training plan (engine/train/instances.py): a 2-step smoke run of each stage on two
corpus photos, the box cache, and the ONNX export with 8 fixed instance slots."""

import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.hints import GLOBAL_DIM  # noqa: E402
from engine.models.colornet import ColorNet  # noqa: E402
from engine.models.config import CONFIGS  # noqa: E402
from engine.models.fusion import (DEFAULT_LAYERS, FUSED_INPUTS, FUSED_LAYERS, FusionLayer,  # noqa: E402
                                  InstanceFusionNet, box_grid, export_fused_onnx, run_colornet)
from tests.helpers import CORPUS, need_data  # noqa: E402

# two corpus photos (never val) with clear detector boxes: a giraffe; a person under an umbrella
PHOTOS = ("coco_000000000025.jpg", "coco_000000000036.jpg")


def _inputs(n=2, h=32, w=48, k=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    full = (torch.rand(n, 1, h, w, generator=g) * 100, torch.randn(n, 2, h, w, generator=g) * 20,
            (torch.rand(n, 1, h, w, generator=g) > 0.97).float(), torch.rand(n, GLOBAL_DIM, generator=g))
    inst = (torch.rand(n, k, 1, s, s, generator=g) * 100, torch.zeros(n, k, 2, s, s), torch.zeros(n, k, 1, s, s),
            torch.zeros(n, k, 4))
    return full, inst


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return ColorNet(CONFIGS["small"]).eval()


def test_block_by_block_run_matches_colornet(net):
    full, _ = _inputs()
    with torch.no_grad():
        ab, dist = net(*full)
        ab2, dist2, feats = run_colornet(net, *full)
    assert torch.equal(ab, ab2) and torch.equal(dist, dist2)
    assert list(feats) == ["conv%d" % i for i in range(1, 11)]


def test_instance_net_starts_from_full_weights(net):
    m = InstanceFusionNet.from_full(net)
    for a, b in zip(m.full.state_dict().values(), m.instance.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(net.state_dict().values(), m.full.state_dict().values()):
        assert torch.equal(a, b)


def test_no_instances_gives_the_full_network(net):
    m = InstanceFusionNet.from_full(net).eval()
    full, inst = _inputs()
    with torch.no_grad():
        ab, dist = net(*full)
        ab2, dist2 = m(*full, *inst)  # all boxes empty: every slot is padding
    assert torch.equal(ab, ab2) and torch.equal(dist, dist2)


def test_whole_image_box_with_the_same_crop_gives_the_full_network(net):
    """Instance features equal to the full ones must fuse to the same features, whatever the weights."""
    m = InstanceFusionNet.from_full(net).eval()
    full, (il, iab, im, boxes) = _inputs(h=32, w=32, s=32)
    il[:, 0], iab[:, 0], im[:, 0] = full[0], full[1], full[2]
    boxes[:, 0] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    with torch.no_grad():
        ab, _ = net(*full)
        ab2, _ = m(*full, il, iab, im, boxes)
    assert (ab - ab2).abs().max() < 1e-3


def test_instance_features_are_placed_in_their_box_and_zero_padded():
    layer = FusionLayer(4)
    full = torch.zeros(1, 4, 8, 8)
    inst = torch.ones(2, 4, 16, 16)  # K = 2 instances, crops 16 x 16
    boxes = torch.tensor([[[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.0, 0.0]]])  # second slot unused
    grid, inside = box_grid(boxes, 8, 8)
    expected = torch.zeros(8, 8)
    expected[4:8, 2:6] = 1
    assert torch.equal(inside[0, 0], expected) and inside[0, 1].sum() == 0
    with torch.no_grad():
        out = layer(full, inst, grid, inside)[0, 0]
    assert (out[expected == 0] == 0).all()  # outside the box only the (zero) full features count
    assert ((out[expected == 1] > 0) & (out[expected == 1] < 1)).all()  # inside: a softmax mix of 0 and 1


def test_a_fresh_fusion_layer_starts_close_to_the_full_network():
    """Before the fusion stage, an instance weighs little inside its box (INSTANCE_START_LOGIT)."""
    torch.manual_seed(0)
    layer = FusionLayer(4)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5]]])
    grid, inside = box_grid(boxes, 8, 8)
    full = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        # full features 0, instance features 1: the fused value is the instance's softmax weight
        weight = layer(torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 16, 16), grid, inside)[0, :, :4, :4]
        fused = layer(full, torch.randn(1, 4, 16, 16), grid, inside)
    assert (weight > 0).all() and (weight < 0.05).all()
    assert (fused - full).abs().max() < 0.25 * full.abs().max()


def test_default_fuses_all_but_the_full_resolution_layers(net):
    assert InstanceFusionNet.from_full(net).layers == DEFAULT_LAYERS == tuple("conv%d" % i for i in range(2, 10))
    with pytest.raises(ValueError, match="unknown fused layers"):
        InstanceFusionNet(layers=("conv11",))


def test_fusion_modules_get_gradients(net):
    m = InstanceFusionNet.from_full(net)
    full, (il, iab, im, boxes) = _inputs()
    boxes[:, 0] = torch.tensor([0.1, 0.2, 0.6, 0.9])
    ab, dist = m(*full, il, iab, im, boxes)
    (ab.square().mean() + dist.mean()).backward()
    for name, layer in m.fusion.items():
        g = layer.instance_weight.net[0].weight.grad
        assert g is not None and g.abs().sum() > 0, name


@pytest.mark.slow
def test_onnx_export_with_eight_slots_matches_torch(net, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = InstanceFusionNet.from_full(net, layers=FUSED_LAYERS).eval()  # the paper's choice: every layer fused
    with torch.no_grad():  # make the fusion weights matter
        for p in m.fusion.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        m.full.prop_gate.conv.bias.fill_(0.5)  # and the propagated hints
    path = str(tmp_path / "fused.onnx")
    export_fused_onnx(m, path, max_instances=8, inst_size=32, size=(32, 48))
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == list(FUSED_INPUTS)
    shapes = {i.name: i.shape for i in s.get_inputs()}
    assert shapes["boxes"] == [8, 4] and shapes["inst_l"][:2] == [8, 1]
    # another photo size and crop size than traced; 2 slots used, 6 padding
    (l, hab, hm, g), (il, iab, im, boxes) = _inputs(n=1, h=64, w=40, k=8, s=48, seed=3)
    boxes[0, 0] = torch.tensor([0.1, 0.1, 0.6, 0.8])
    boxes[0, 1] = torch.tensor([0.4, 0.3, 0.95, 0.7])
    hm[..., 10, 10] = 1.0  # a hint, so the propagated hints pass the full network's gate
    prop = torch.cat([torch.randn(1, 2, 64, 40) * 30, torch.rand(1, 1, 64, 40)], 1)
    with torch.no_grad():
        ref = m(l, hab, hm, g, il, iab, im, boxes, prop)
    feeds = dict(zip(FUSED_INPUTS, [t.numpy() for t in (l, hab, hm, g, il[0], iab[0], im[0], boxes[0], prop)]))
    out = s.run(None, feeds)
    assert out[0].shape == (1, 2, 64, 40) and out[1].shape == (1, 313, 16, 10)
    np.testing.assert_allclose(out[0], ref[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(out[1], ref[1].numpy(), atol=1e-3)


def test_onnx_export_with_a_dynamic_slot_count_and_fewer_layers(net, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = InstanceFusionNet.from_full(net, layers=("conv3", "conv8", "conv9")).eval()
    assert list(m.fusion) == ["conv3", "conv8", "conv9"]
    path = str(tmp_path / "fused_dyn.onnx")
    export_fused_onnx(m, path, dynamic_instances=True)
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (l, hab, hm, g), (il, iab, im, boxes) = _inputs(n=1, h=48, w=56, k=2, s=32, seed=5)
    boxes[0, 0] = torch.tensor([0.2, 0.1, 0.9, 0.6])
    boxes[0, 1] = torch.tensor([0.0, 0.5, 0.4, 1.0])
    prop = torch.cat([torch.randn(1, 2, 48, 56) * 30, torch.rand(1, 1, 48, 56)], 1)
    with torch.no_grad():
        ref = m(l, hab, hm, g, il, iab, im, boxes, prop)
    feeds = dict(zip(FUSED_INPUTS, [t.numpy() for t in (l, hab, hm, g, il[0], iab[0], im[0], boxes[0], prop)]))
    out = s.run(None, feeds)  # K = 2 slots only
    np.testing.assert_allclose(out[0], ref[0].numpy(), atol=1e-3)


# ----------------------------------------------------------------------------- three-stage smoke run


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory):
    need_data(CORPUS)
    d = tmp_path_factory.mktemp("corpus2")
    for name in PHOTOS:
        shutil.copy(os.path.join(CORPUS, name), d)
    return str(d)


@pytest.mark.slow
def test_three_stages_two_steps_each(two_photos, tmp_path):
    from engine.train import instances as I

    quiet = dict(progress=False, log=lambda m: None)
    cache = str(tmp_path / "boxes.npz")
    full = I.run_stage("full", two_photos, str(tmp_path / "full"), steps=2, batch_size=2, crop=32,
                       checkpoint_every=1, **quiet)
    inst = I.run_stage("instance", two_photos, str(tmp_path / "inst"), full_checkpoint=full, steps=2, batch_size=2,
                       crop=32, box_cache=cache, checkpoint_every=1, **quiet)
    fused = I.run_stage("fusion", two_photos, str(tmp_path / "fusion"), full_checkpoint=full,
                        instance_checkpoint=inst, steps=2, batch_size=2, crop=32, box_cache=cache,
                        checkpoint_every=1, **quiet)
    # the box cache was written once and is reused without a detector
    with np.load(cache) as z:
        assert sorted(z["names"]) == sorted(PHOTOS) and (z["counts"] >= 1).all()
        assert z["boxes"].shape == (2, 8, 4) and (z["boxes"] >= 0).all() and (z["boxes"] <= 1).all()

    class NoDetector:
        def detect(self, *a, **k):
            raise AssertionError("boxes should come from the cache")

    boxes = I.cache_boxes(two_photos, cache, detector=NoDetector(), **quiet)
    assert all(len(b) >= 1 for b, _ in boxes.values())
    # the instance net started from the full one (two small Adam steps away from it, while a fresh
    # network is nowhere near); the fusion stage left both networks untouched
    full_state = torch.load(full, weights_only=False)["model"]
    inst_state = torch.load(inst, weights_only=False)
    fresh = ColorNet(CONFIGS["small"]).state_dict()
    for k in ("conv1.0.weight", "conv5.0.weight", "ab_head.weight"):
        assert (inst_state["model"][k] - full_state[k]).abs().max() < 0.01
        assert (fresh[k] - full_state[k]).abs().max() > 0.05
    fused_state = torch.load(fused, weights_only=False)
    assert inst_state["stage"] == "instance" and inst_state["step"] == 2
    assert fused_state["stage"] == "fusion" and fused_state["step"] == 2
    for k, v in full_state.items():
        assert torch.equal(fused_state["model"]["full." + k], v)
    for k, v in inst_state["model"].items():
        assert torch.equal(fused_state["model"]["instance." + k], v)
    # resume: asking for 3 steps continues from step 2
    I.run_stage("fusion", two_photos, str(tmp_path / "fusion"), full_checkpoint=full, instance_checkpoint=inst,
                steps=3, batch_size=2, crop=32, box_cache=cache, checkpoint_every=1, **quiet)
    assert torch.load(fused, weights_only=False)["step"] == 3
    # the fused checkpoint exports with 8 slots
    pytest.importorskip("onnx")
    out = I.export_fused(fused, str(tmp_path / "fused.onnx"))
    model, state = I.load_fused(fused)
    assert state["layers"] == ["conv%d" % i for i in range(2, 10)] and model.layers == tuple(state["layers"])
    import onnx

    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["max_instances"] == "8" and meta["stage"] == "fusion" and meta["dynamic_instances"] == "true"
    assert meta["full_train_step"] == "2" and meta["instance_train_step"] == "2"


def test_fusion_batches_carry_boxes_and_instance_hints(two_photos, tmp_path):
    from engine.train import instances as I

    items = I.load_photos_with_boxes(two_photos, str(tmp_path / "b.npz"), progress=False, log=lambda m: None)
    maker = I.FusionBatchMaker(items, crop=64, inst_size=32, seed=1, p_with_boxes=1.0)
    maker.hints.p_no_hints = 0.0
    maker.hints.geometric_p = 0.05  # many hint patches
    b = maker.batch(4)
    k = b["boxes"].shape[1]
    assert b["inst_l"].shape == (4, k, 1, 32, 32) and b["l"].shape == (4, 1, 64, 64)
    used = (b["boxes"][..., 2] > b["boxes"][..., 0])
    assert used.any() and (b["boxes"] >= 0).all() and (b["boxes"] <= 1).all()
    # padding slots are all zero
    assert (b["inst_l"][~used] == 0).all()
    # an instance's hints are the full crop's hints inside its box
    n_inst = b["inst_hint_mask"][used].sum()
    assert n_inst > 0
    for i, j in zip(*np.nonzero(used)):
        x0, y0, x1, y1 = b["boxes"][i, j] * 64
        full_in_box = b["hint_mask"][i, 0, int(np.ceil(y0)):int(y1), int(np.ceil(x0)):int(x1)].sum()
        if full_in_box == 0:
            assert b["inst_hint_mask"][i, j].sum() == 0


def test_instance_batches_are_crops(two_photos, tmp_path):
    from engine.train import instances as I

    items = I.load_photos_with_boxes(two_photos, str(tmp_path / "b.npz"), progress=False, log=lambda m: None)
    b = I.InstanceBatchMaker(items, size=32, seed=0).batch(3)
    assert b["l"].shape == (3, 1, 32, 32) and b["ab"].shape == (3, 2, 32, 32)
    assert b["global_hints"].shape == (3, GLOBAL_DIM)
