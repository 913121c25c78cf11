"""Tinct's colorization network on a pretrained encoder: EfficientNet-Lite0 (ImageNet) sees the
photo's lightness; a light decoder (the "head") turns its features and the user's hints into ab.

Why split this way: what a photo shows (sky, skin, foliage) is what 1757 corpus photos cannot
teach, and ImageNet already did; the encoder sees only the photo, so its features are computed
once per photo (and cached by the engine), and a hint edit re-runs only the head.

The head, in the layout of Zhang et al. 2017 but on the encoder's scales:
- a hint branch at full resolution takes L, the local hints (ab + mask) and their propagation
  along edges (Levin's, ab + reach), and joins the decoder at 1/2, 1/4 and 1/8 resolution, so a
  1-pixel dot reaches every scale;
- the decoder climbs from the encoder's 1/32 features to full resolution, taking the encoder's
  features at each scale (U-Net lateral connections);
- global hints (a reference palette's 313-bin histogram and saturation) enter at 1/32, and the
  pooled local hints (HintSummary) at 1/8;
- outputs: ab by regression (tanh, full resolution), blended with the propagated hints by a
  learned per-pixel gate (PropGate), and the 313-bin color distribution at 1/4 resolution, the
  source of `tinct suggest`.
All inputs and outputs are in natural units (L 0..100, ab about -110..110).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..gamut import NUM_BINS, ab_bins
from ..hints import GLOBAL_DIM
from .colornet import AB_SCALE, HintSummary, PropGate
from .efficientnet import FEATURE_CHANNELS, MULTIPLE, Encoder

# decoder channels at strides 32, 16, 8, 4, 2, 1; hint branch channels at strides 1, 2, 4, 8
DECODER = (160, 128, 96, 64, 32, 16)
DECODER_STAGES = ("dec32", "dec16", "dec8", "dec4", "dec2", "dec1")
HINT_BRANCH = (16, 24, 32, 48)


def conv_bn(cin, cout, n=2):
    """n 3x3 conv + BatchNorm + ReLU layers."""
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(True)]
    return nn.Sequential(*layers)


def up2(x):
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class HintBranch(nn.Module):
    """L, local hints and propagated hints at full resolution -> features at strides 1, 2, 4, 8."""

    def __init__(self, channels=HINT_BRANCH):
        super().__init__()
        c1, c2, c4, c8 = channels
        self.full = nn.Sequential(nn.Conv2d(7, c1, 3, padding=1), nn.ReLU(True))
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.ReLU(True))
                                  for a, b in ((c1, c2), (c2, c4), (c4, c8)))

    def forward(self, l, hint_ab, hint_mask, hint_prop):
        x = torch.cat([(l - 50.0) / 50.0, hint_ab / AB_SCALE, hint_mask, hint_prop[:, :2] / AB_SCALE,
                       hint_prop[:, 2:]], 1)
        out = [self.full(x)]
        for down in self.down:
            out.append(down(out[-1]))
        return out


class HintHead(nn.Module):
    """(encoder features, L, hints) -> (ab, distribution logits). Sides: multiples of 32."""

    def __init__(self, decoder=DECODER, hint_channels=HINT_BRANCH, feature_dropout=0.0):
        super().__init__()
        d32, d16, d8, d4, d2, d1 = decoder
        f4, f8, f16, f32 = FEATURE_CHANNELS
        h1, h2, h4, h8 = hint_channels
        self.hints = HintBranch(hint_channels)
        # training only: drops whole feature channels, so the head cannot learn a corpus photo by them
        self.feature_dropout = nn.Dropout2d(feature_dropout)
        self.lat32 = nn.Conv2d(f32, d32, 1)
        self.global_net = nn.Sequential(nn.Linear(GLOBAL_DIM, d32), nn.ReLU(True), nn.Linear(d32, d32))
        self.dec32 = conv_bn(d32, d32, 1)
        self.proj16, self.lat16 = nn.Conv2d(d32, d16, 1), nn.Conv2d(f16, d16, 1)
        self.dec16 = conv_bn(d16, d16)
        self.proj8, self.lat8, self.hint8 = nn.Conv2d(d16, d8, 1), nn.Conv2d(f8, d8, 1), nn.Conv2d(h8, d8, 1)
        self.hint_summary = HintSummary(d8)
        self.dec8 = conv_bn(d8, d8)
        self.proj4, self.lat4, self.hint4 = nn.Conv2d(d8, d4, 1), nn.Conv2d(f4, d4, 1), nn.Conv2d(h4, d4, 1)
        self.dec4 = conv_bn(d4, d4)
        self.dist_head = nn.Conv2d(d4, NUM_BINS, 1)
        # the hints at 1/4 straight into the distribution: a 1x1 conv can put a peak at a hint's ab
        # (logit_k = c_k.ab - |c_k|^2/2 is linear in ab), so a dot leads `tinct suggest` at its spot;
        # zero at first, so a head trained without it starts unchanged
        self.dist_hints = nn.Conv2d(6, NUM_BINS, 1)
        nn.init.zeros_(self.dist_hints.weight)
        nn.init.zeros_(self.dist_hints.bias)
        # and where a cell holds a hint, a learned trust in it: a Gaussian bump at the hint's ab
        self.register_buffer("bins", torch.from_numpy(ab_bins()).float()[None, :, :, None, None], persistent=False)
        self.hint_trust = nn.Parameter(torch.zeros(1))
        self.proj2, self.hint2 = nn.Conv2d(d4, d2, 1), nn.Conv2d(h2, d2, 1)
        self.dec2 = conv_bn(d2, d2, 1)
        self.proj1, self.hint1 = nn.Conv2d(d2, d1, 1), nn.Conv2d(h1, d1, 1)
        self.dec1 = nn.Sequential(nn.Conv2d(d1, d1, 3, padding=1), nn.LeakyReLU(0.2, True))
        self.ab_head = nn.Conv2d(d1, 2, 1)
        self.prop_gate = PropGate(d1)

    def hint_bump(self, quarter):
        """trust * -(distance from each bin to the cell's hint ab / 10)^2, in cells holding a hint."""
        d2 = ((self.bins - quarter[:, None, :2] * 100.0) ** 2).sum(2) / 100.0
        return -self.hint_trust * d2 * quarter[:, 2:3]

    def forward(self, f4, f8, f16, f32, l, hint_ab, hint_mask, global_hints, hint_prop, fuse=None):
        """fuse(name, x) -> x, if given, sees each decoder stage's output ("dec32" .. "dec1") and
        may replace it: the instance-aware model blends its objects' features in there."""
        fuse = fuse or (lambda name, x: x)
        f4, f8, f16, f32 = (self.feature_dropout(f) for f in (f4, f8, f16, f32))
        h1, h2, h4, h8 = self.hints(l, hint_ab, hint_mask, hint_prop)
        x = fuse("dec32", self.dec32(self.lat32(f32) + self.global_net(global_hints)[:, :, None, None]))
        x = fuse("dec16", self.dec16(up2(self.proj16(x)) + self.lat16(f16)))
        x = fuse("dec8", self.dec8(up2(self.proj8(x)) + self.lat8(f8) + self.hint8(h8)
                                   + self.hint_summary(hint_ab, hint_mask)))
        x = fuse("dec4", self.dec4(up2(self.proj4(x)) + self.lat4(f4) + self.hint4(h4)))
        quarter = quarter_hints(hint_ab, hint_mask, hint_prop)
        dist = self.dist_head(x) + self.dist_hints(quarter) + self.hint_bump(quarter)
        x = fuse("dec2", self.dec2(up2(self.proj2(x)) + self.hint2(h2)))
        x = fuse("dec1", self.dec1(up2(self.proj1(x)) + self.hint1(h1)))
        ab = torch.tanh(self.ab_head(x)) * AB_SCALE
        gate = self.prop_gate(x, hint_prop[:, 2:], hint_mask)
        return ab + gate * (hint_prop[:, :2] - ab), dist


class HeadEnsemble(nn.Module):
    """Several heads trained apart (other seeds, so other crops, windows and hints) on the one
    encoder, as one head: ab averaged, distributions mixed (the logits returned are the mixture's
    log-probabilities). Heads that learned the corpus apart disagree where a photo is ambiguous,
    and their mean is the safer color there; the encoder, the costly part, still runs once."""

    def __init__(self, heads):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, *inputs):
        outs = [head(*inputs) for head in self.heads]
        ab = torch.stack([ab for ab, _ in outs]).mean(0)
        logp = torch.stack([F.log_softmax(dist, 1) for _, dist in outs])
        return ab, torch.logsumexp(logp, 0) - math.log(len(outs))


def quarter_hints(hint_ab, hint_mask, hint_prop):
    """Hints at 1/4 resolution: the mean hint ab in each 4x4 cell, whether it holds one, and the
    propagated ab and reach (ab in natural units / 100)."""
    mask4 = F.avg_pool2d(hint_mask, 4)
    ab4 = F.avg_pool2d(hint_ab * hint_mask, 4) / mask4.clamp_min(1.0 / 16)
    return torch.cat([ab4 / 100.0, (mask4 > 0).float(), F.avg_pool2d(hint_prop[:, :2], 4) / 100.0,
                      F.avg_pool2d(hint_prop[:, 2:], 4)], 1)


def load_head(head, state_dict):
    """Load a head's weights; a head saved before the distribution took the hints directly keeps
    that input at zero (its outputs are unchanged)."""
    missing, unexpected = head.load_state_dict(state_dict, strict=False)
    if unexpected or any(not k.startswith(("dist_hints.", "hint_trust")) for k in missing):
        raise ValueError("weights do not fit the head: missing %s, unexpected %s" % (missing, unexpected))
    return head


def pad_to_multiple(x, multiple=MULTIPLE, mode="replicate"):
    """Pad the bottom and right of an NCHW tensor to sides that are multiples of `multiple`."""
    ph, pw = -x.shape[2] % multiple, -x.shape[3] % multiple
    if not ph and not pw:
        return x
    return F.pad(x, (0, pw, 0, ph), mode=mode) if mode == "replicate" else F.pad(x, (0, pw, 0, ph))


class PretrainedColorNet(nn.Module):
    """Encoder + head as one network with ColorNet's call signature (training's held-out scores
    run it through the product's pipeline). Any side that is a multiple of 8: L is padded by
    edge replication and the hints with zeros to multiples of 32, as the engine does."""

    def __init__(self, encoder=None, head=None):
        super().__init__()
        self.encoder = encoder or Encoder()
        self.head = head or HintHead()

    def forward(self, l, hint_ab, hint_mask, global_hints, hint_prop=None):
        h, w = l.shape[2:]
        if hint_prop is None:
            hint_prop = torch.zeros_like(hint_ab[:, :1]).expand(-1, 3, -1, -1)
        l, (hint_ab, hint_mask, hint_prop) = pad_to_multiple(l), (
            pad_to_multiple(t, mode="constant") for t in (hint_ab, hint_mask, hint_prop))
        ab, dist = self.head(*self.encoder(l), l, hint_ab, hint_mask, global_hints, hint_prop)
        return ab[:, :, :h, :w], dist[:, :, :h // 4, :w // 4]
