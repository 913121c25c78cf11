"""Instance-aware colorization (Su, Chu and Huang 2020) on the pretrained-encoder network.

The same plan as engine/models/fusion.py, on engine/models/hintnet.py's layout:
  * the frozen ImageNet encoder sees the whole photo and, separately, each object's crop at up to
    the working resolution (so an object small in the scene is seen large, as ImageNet saw it);
  * the full head decodes the photo; the instance head (a HintHead started from the full head's
    weights, trained on object crops) decodes each crop;
  * at each decoder stage (the paper fuses every layer) a FusionLayer blends them: weight maps from
    small conv nets, the instance maps placed into their boxes, a softmax over background +
    instances.
The encoder is not part of this module: the engine computes (and caches) its features of the
photo and of the crops, so a hint edit runs only this head. Boxes are (x0, y0, x1, y1) in [0, 1]
of the encoder's (padded) canvas; an all-zero box is an unused slot.
"""

import copy

import torch
from torch import nn

from ..instance_aware import FUSED_HEAD_INPUTS, FUSED_OUTPUTS
from .efficientnet import FEATURE_CHANNELS, FEATURE_NAMES
from .fusion import FusionLayer, box_fuser
from .hintnet import DECODER, DECODER_STAGES, HintHead

# every decoder stage but the full-resolution one, where K placed maps at every pixel cost the most
# (the small network skips its full-resolution layers for the same reason, see fusion.py)
DEFAULT_STAGES = DECODER_STAGES[:-1]
INST_PREFIX = "inst_"


class LiteFusionHead(nn.Module):
    """Full head + instance head + FusionLayers at `stages` (of DECODER_STAGES)."""

    def __init__(self, full_head=None, instance_head=None, stages=DEFAULT_STAGES, hidden=16):
        super().__init__()
        unknown = [s for s in stages if s not in DECODER_STAGES]
        if unknown:
            raise ValueError("unknown decoder stages %s (choose from %s)" % (unknown, ", ".join(DECODER_STAGES)))
        self.stages = tuple(s for s in DECODER_STAGES if s in stages)
        self.full = full_head or HintHead()
        self.instance = instance_head or copy.deepcopy(self.full)
        channels = dict(zip(DECODER_STAGES, DECODER))
        self.fusion = nn.ModuleDict({s: FusionLayer(channels[s], hidden) for s in self.stages})

    def instance_features(self, inst_feats, inst_l, inst_hint_ab, inst_hint_mask, global_hints):
        """Crops (N, K, ...) -> the instance head's decoder outputs at the fused stages, (N*K, C, s, s).
        Instances see their crop's own hints, not the propagation over the whole photo."""
        n, k = inst_l.shape[:2]

        def flat(t):
            return t.reshape((n * k,) + tuple(t.shape[2:]))

        g = global_hints[:, None].expand(n, k, global_hints.shape[1]).reshape(n * k, -1)
        l, ab, mask = flat(inst_l), flat(inst_hint_ab), flat(inst_hint_mask)
        prop = torch.zeros_like(ab[:, :1]).expand(-1, 3, -1, -1)
        out = {}

        def keep(name, x):
            if name in self.fusion:
                out[name] = x
            return x

        self.instance(*(flat(f) for f in inst_feats), l, ab, mask, g, prop, fuse=keep)
        return out

    def forward(self, f4, f8, f16, f32, l, hint_ab, hint_mask, global_hints, hint_prop,
                inst_f4, inst_f8, inst_f16, inst_f32, inst_l, inst_hint_ab, inst_hint_mask, boxes):
        """Whole photo as HintHead takes it; instances: inst_f* (N, K, C, s/stride, s/stride),
        inst_l (N, K, 1, s, s), inst_hint_ab (N, K, 2, s, s), inst_hint_mask (N, K, 1, s, s),
        boxes (N, K, 4). -> (ab (N, 2, H, W), dist_logits (N, 313, H/4, W/4))."""
        inst = self.instance_features((inst_f4, inst_f8, inst_f16, inst_f32), inst_l, inst_hint_ab,
                                      inst_hint_mask, global_hints)
        fuse = box_fuser(self.fusion, inst, boxes)
        return self.full(f4, f8, f16, f32, l, hint_ab, hint_mask, global_hints, hint_prop, fuse=fuse)


class FusedHeadExport(nn.Module):
    """ONNX wrapper: one photo, K instances on axis 0 (dynamic)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        full, inst = inputs[:9], inputs[9:]
        return self.model(*full, *(t[None] for t in inst))


def export_fused_head(model, out_path, size=(64, 96), inst_size=64, instances=2, opset=17, metadata=None):
    """A LiteFusionHead -> ONNX (FUSED_HEAD_INPUTS -> ab, dist_logits): photo sides, crop side and
    the number of instances are dynamic; sides must be multiples of 32 (the encoder's)."""
    import warnings

    from ..hints import GLOBAL_DIM

    model = copy.deepcopy(model).eval()
    h, w = size
    k, s = instances, inst_size
    strides = [int(n[1:]) for n in FEATURE_NAMES]
    feats = tuple(torch.randn(1, c, h // st, w // st) for c, st in zip(FEATURE_CHANNELS, strides))
    inst_feats = tuple(torch.randn(k, c, s // st, s // st) for c, st in zip(FEATURE_CHANNELS, strides))
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9]] * k)
    dummy = feats + (torch.rand(1, 1, h, w) * 100, torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w),
                     torch.zeros(1, GLOBAL_DIM), torch.zeros(1, 3, h, w)) + inst_feats + (
        torch.rand(k, 1, s, s) * 100, torch.zeros(k, 2, s, s), torch.zeros(k, 1, s, s), boxes)
    axes = {}
    for name in FUSED_HEAD_INPUTS:
        if name == "global_hints":
            continue
        if name == "boxes":
            axes[name] = {0: "instances"}
        elif name.startswith(INST_PREFIX):
            axes[name] = {0: "instances", 2: "crop_" + name, 3: "crop_" + name + "_w"}
        else:
            axes[name] = {2: "height_" + name, 3: "width_" + name}
    axes.update({n: {2: "height_" + n, 3: "width_" + n} for n in FUSED_OUTPUTS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FusedHeadExport(model), dummy, out_path, input_names=list(FUSED_HEAD_INPUTS),
                          output_names=list(FUSED_OUTPUTS), dynamic_axes=axes, opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    if metadata:
        from ..train.export import write_metadata

        write_metadata(out_path, metadata)
    return out_path
