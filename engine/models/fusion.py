"""Instance-aware colorization (Su, Chu and Huang, CVPR 2020) on top of ColorNet.

Two networks of the same layout (engine/models/colornet.py):
  * the full-image network colorizes the whole photo;
  * the instance network colorizes each detected object, cropped and resized to
    a square of the working resolution; it starts from the full network's weights.
At each fused layer (a block output; by default conv2 .. conv9, see DEFAULT_LAYERS) a fusion module
mixes the two: small conv nets (3 convs) predict a weight map for the full-image
features and one for each instance's features; the instance features and their
weight maps are resized into the instance's box at that layer's scale and
zero-padded outside it; a softmax over background + instances (an instance
counts only inside its box) gives per-pixel weights; the fused feature is the
weighted sum. The fused feature replaces the full network's feature and flows
on (skip connections included), so later layers see the instances too.

Boxes are given as (x0, y0, x1, y1) in [0, 1] of the full image's width and
height (resolution-free). A slot whose box has no area is unused: it gets zero
weight everywhere, so a fixed number of slots (8) with padding exports to ONNX.
"Resize into the box and zero-pad" is done with `grid_sample` (bilinear, zeros
outside), which is exactly a bilinear resize of the instance map to the box
placed on a zero canvas, and exports as ONNX GridSample (opset >= 16).
"""

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..instance_aware import FUSED_INPUTS, FUSED_OUTPUTS
from .colornet import ColorNet
from .config import CONFIGS

FUSED_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8", "conv9", "conv10")
# The paper fuses every layer. Tinct skips the two full-resolution ones (conv1, conv10) by
# default: there K instance maps are placed, weighted and summed at every working-grid pixel,
# which made 8 instances cost 2.1x the full pipeline at 1 MP on a 2-core CPU instead of 1.6x
# (bench/bench_instances.py). Instance information still reaches conv10 through conv9.
DEFAULT_LAYERS = FUSED_LAYERS[1:-1]
MAX_INSTANCES = 8
NEG = -1.0e4  # logit of an instance outside its box (softmax weight ~ 0, finite so no NaN)
# A fresh fusion layer starts close to the full network alone: its instance weight net's last bias
# makes an instance weigh about 2 % inside its box (e^-4 against the background's e^0). The fusion
# stage then only moves weight to the instances where that lowers the loss, instead of starting
# from a 50/50 blend of two networks that were never trained to be mixed.
INSTANCE_START_LOGIT = -4.0


def layer_channels(config):
    ch = config.channels()
    return {"conv1": ch["c1"], "conv2": ch["c2"], "conv3": ch["c3"], "conv4": ch["c4"], "conv5": ch["c4"],
            "conv6": ch["c4"], "conv7": ch["c4"], "conv8": ch["c8"], "conv9": ch["c9"], "conv10": ch["c10"]}


def run_colornet(net, l, hint_ab, hint_mask, global_hints, fuse=None, hint_prop=None):
    """(ab, dist_logits, features) of a ColorNet, with `fuse` applied after each block (ColorNet.run)."""
    return net.run(l, hint_ab, hint_mask, global_hints, fuse=fuse, hint_prop=hint_prop)


class WeightNet(nn.Module):
    """Three 3x3 convs: features (C channels) -> one weight-map logit."""

    def __init__(self, cin, hidden=16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, hidden, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, x):
        return self.net(x)


class FusionLayer(nn.Module):
    """Fuses one layer: full features + K instance features -> one feature map."""

    def __init__(self, channels, hidden=16):
        super().__init__()
        self.full_weight = WeightNet(channels, hidden)
        self.instance_weight = WeightNet(channels, hidden)
        nn.init.constant_(self.instance_weight.net[-1].bias, INSTANCE_START_LOGIT)
        nn.init.zeros_(self.full_weight.net[-1].bias)

    def forward(self, full, inst, grid, inside):
        """full (N, C, h, w); inst (N*K, C, s, s); grid (N*K, h, w, 2); inside (N, K, h, w) in {0, 1}."""
        n, c, h, w = full.shape
        k = inside.shape[1]
        inst_logit = self.instance_weight(inst)  # (N*K, 1, s, s)
        # features and logits are placed with separate calls: one call on their concatenation
        # costs more in onnxruntime (it slices the big result apart again)
        inst_feat = F.grid_sample(inst, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        logits = F.grid_sample(inst_logit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        inst_feat = inst_feat.reshape(n, k, c, h, w)  # zero outside the box
        logits = logits.reshape(n, k, h, w) * inside + (1.0 - inside) * NEG
        logits = torch.cat([self.full_weight(full), logits], 1)  # background first
        weights = torch.softmax(logits, dim=1)  # (N, 1 + K, h, w)
        fused = full * weights[:, :1] + (inst_feat * weights[:, 1:, None]).sum(1)
        return fused


def box_grid(boxes, h, w):
    """Sampling grid placing a crop into its box on an (h, w) canvas.

    boxes (N, K, 4) as x0, y0, x1, y1 in [0, 1] -> (grid (N*K, h, w, 2) for
    grid_sample, inside (N, K, h, w) = 1 where a canvas cell's center lies in the box).
    """
    n, k, _ = boxes.shape
    x0, y0, x1, y1 = (boxes[..., i].reshape(n, k, 1, 1) for i in range(4))
    xs = (torch.arange(w, dtype=boxes.dtype, device=boxes.device) + 0.5) / w
    ys = (torch.arange(h, dtype=boxes.dtype, device=boxes.device) + 0.5) / h
    xs = xs.reshape(1, 1, 1, w)
    ys = ys.reshape(1, 1, h, 1)
    bw = x1 - x0
    bh = y1 - y0
    valid = ((bw > 0) & (bh > 0)).to(boxes.dtype)
    u = (xs - x0) / torch.where(bw > 0, bw, torch.ones_like(bw))  # 0..1 across the box
    v = (ys - y0) / torch.where(bh > 0, bh, torch.ones_like(bh))
    u, v = torch.broadcast_tensors(u, v)  # (N, K, h, w)
    inside = ((u >= 0) & (u < 1) & (v >= 0) & (v < 1)).to(boxes.dtype) * valid
    grid = torch.stack([u * 2 - 1, v * 2 - 1], -1).reshape(n * k, h, w, 2)
    return grid, inside


def box_fuser(fusion, inst, boxes):
    """fuse(name, x) for a network's forward: at each layer in `fusion` (a ModuleDict of
    FusionLayer), x blended with the instances' features `inst[name]` placed in their boxes
    (the sampling grids made once per scale); other layers pass through."""
    grids = {}

    def fuse(name, x):
        if name not in fusion:
            return x
        h, w = x.shape[2:]
        if (h, w) not in grids:
            grids[(h, w)] = box_grid(boxes, h, w)
        grid, inside = grids[(h, w)]
        return fusion[name](x, inst[name], grid, inside)

    return fuse


class InstanceFusionNet(nn.Module):
    """Full-image ColorNet + instance ColorNet + fusion modules at `layers` (of FUSED_LAYERS)."""

    def __init__(self, config=CONFIGS["small"], hidden=16, layers=DEFAULT_LAYERS):
        super().__init__()
        unknown = [name for name in layers if name not in FUSED_LAYERS]
        if unknown:
            raise ValueError("unknown fused layers %s (choose from %s)" % (unknown, ", ".join(FUSED_LAYERS)))
        self.config = config
        self.layers = tuple(name for name in FUSED_LAYERS if name in layers)
        self.full = ColorNet(config)
        self.instance = ColorNet(config)
        chans = layer_channels(config)
        self.fusion = nn.ModuleDict({name: FusionLayer(chans[name], hidden) for name in self.layers})

    @classmethod
    def from_full(cls, full_net, instance_net=None, hidden=16, layers=DEFAULT_LAYERS):
        """Both networks start from a trained full-image ColorNet (or the given instance net)."""
        model = cls(full_net.config, hidden, layers)
        model.full.load_state_dict(full_net.state_dict())
        model.instance.load_state_dict((instance_net or full_net).state_dict())
        return model

    def instance_features(self, inst_l, inst_hint_ab, inst_hint_mask, global_hints):
        """Instance crops (N, K, C, s, s) -> features per fused layer, each (N*K, C_l, s_l, s_l)."""
        n, k = inst_l.shape[:2]
        flat = lambda t: t.reshape((n * k,) + tuple(t.shape[2:]))
        g = global_hints[:, None].expand(n, k, global_hints.shape[1]).reshape(n * k, -1)
        _, _, feats = run_colornet(self.instance, flat(inst_l), flat(inst_hint_ab), flat(inst_hint_mask), g)
        return feats

    def forward(self, l, hint_ab, hint_mask, global_hints, inst_l, inst_hint_ab, inst_hint_mask, boxes,
                hint_prop=None):
        """Full image: l (N,1,H,W), hint_ab (N,2,H,W), hint_mask (N,1,H,W), global_hints (N,G),
        and optionally the propagated hints hint_prop (N,3,H,W), which only the full network takes;
        instances: inst_l (N,K,1,s,s), inst_hint_ab (N,K,2,s,s), inst_hint_mask (N,K,1,s,s),
        boxes (N,K,4) in [0, 1] (a slot with an empty box is unused).
        -> (ab (N,2,H,W), dist_logits (N,313,H/4,W/4))."""
        fuse = box_fuser(self.fusion, self.instance_features(inst_l, inst_hint_ab, inst_hint_mask, global_hints),
                         boxes)
        ab, dist, _ = run_colornet(self.full, l, hint_ab, hint_mask, global_hints, fuse=fuse, hint_prop=hint_prop)
        return ab, dist

    def fusion_parameters(self):
        return self.fusion.parameters()


class FusedExport(nn.Module):
    """ONNX wrapper: one photo, a fixed number of instance slots.

    Inputs  l (1,1,H,W), hint_ab (1,2,H,W), hint_mask (1,1,H,W), global_hints (1,G),
            inst_l (K,1,S,S), inst_hint_ab (K,2,S,S), inst_hint_mask (K,1,S,S), boxes (K,4) in [0, 1],
            hint_prop (1,3,H,W).
    Outputs ab (1,2,H,W), dist_logits (1,313,H/4,W/4).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, l, hint_ab, hint_mask, global_hints, inst_l, inst_hint_ab, inst_hint_mask, boxes, hint_prop):
        return self.model(l, hint_ab, hint_mask, global_hints, inst_l[None], inst_hint_ab[None],
                          inst_hint_mask[None], boxes[None], hint_prop)




def export_fused_onnx(model, out_path, max_instances=MAX_INSTANCES, inst_size=64, size=(64, 96), opset=17,
                      metadata=None, dynamic_instances=False):
    """Export an InstanceFusionNet to ONNX with `max_instances` fixed slots.

    The photo's height and width and the crop side S are dynamic (multiples of 8).
    dynamic_instances=True also makes the slot count K dynamic (axis 0 of the inst_*
    inputs and of boxes), so a caller can pass only the slots it uses (K >= 1) and
    skip the work on padding; the fixed-slot file is the default.
    """
    import warnings

    from ..hints import GLOBAL_DIM

    model = copy.deepcopy(model).eval()
    wrapper = FusedExport(model)
    h, w = size
    k, s = max_instances, inst_size
    boxes = torch.zeros(k, 4)
    boxes[0] = torch.tensor([0.1, 0.2, 0.5, 0.9])
    dummy = (torch.rand(1, 1, h, w) * 100, torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w), torch.zeros(1, GLOBAL_DIM),
             torch.rand(k, 1, s, s) * 100, torch.zeros(k, 2, s, s), torch.zeros(k, 1, s, s), boxes,
             torch.zeros(1, 3, h, w))
    axes = {"l": {2: "height", 3: "width"}, "hint_ab": {2: "height", 3: "width"}, "hint_mask": {2: "height", 3: "width"},
            "hint_prop": {2: "height", 3: "width"}, "inst_l": {2: "crop", 3: "crop"}, "inst_hint_ab": {2: "crop", 3: "crop"},
            "inst_hint_mask": {2: "crop", 3: "crop"},
            "ab": {2: "height", 3: "width"}, "dist_logits": {2: "height4", 3: "width4"}}
    if dynamic_instances:
        for name in ("inst_l", "inst_hint_ab", "inst_hint_mask", "boxes"):
            axes.setdefault(name, {})[0] = "instances"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, dummy, out_path, input_names=list(FUSED_INPUTS), output_names=list(FUSED_OUTPUTS),
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    if metadata:
        from ..train.export import write_metadata

        write_metadata(out_path, metadata)
    return out_path
