"""A hint-guided colorization U-Net in the layout of Zhang et al. 2017 (SIGGRAPH17).

Inputs: L, local hints (ab + mask) at full resolution, and a global-hint vector
(ab histogram, saturation, on-flags) injected at the 1/8-resolution bottleneck.
The local hints also reach the bottleneck pooled (HintSummary), so that a few
dots inform the whole photo from the first layers of training on, instead of
only after the encoder has learned to carry them down.
When the caller also gives `hint_prop` (Levin's edge-aware spread of the hints'
ab and their reach, `engine.levin.propagate_hints`), it enters with L, and a
learned per-pixel gate blends the spread ab with the network's own: the network
learns where propagation along edges is right and where its sense of objects
knows better.
Outputs: ab by regression, and logits of a 313-bin color distribution at 1/4
resolution (the source of per-pixel color suggestions).
All inputs and outputs are in natural units (L 0..100, ab about -110..110); the
normalization lives inside the network so the ONNX file is self-describing.
"""

import torch
from torch import nn
from torch.nn import functional as F

from ..gamut import NUM_BINS
from ..hints import GLOBAL_DIM
from .config import CONFIGS, NetConfig

AB_SCALE = 110.0


def conv_block(cin, cout, n, dilation=1):
    """n 3x3 conv + ReLU layers followed by BatchNorm, as in SIGGRAPH17."""
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=dilation, dilation=dilation), nn.ReLU(True)]
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


class UpSkip(nn.Module):
    """Transposed-conv upsampling plus a 3x3 shortcut from the encoder (U-Net skip)."""

    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
        self.skip = nn.Conv2d(cskip, cout, 3, padding=1)

    def forward(self, x, skip):
        return F.relu(self.up(x) + self.skip(skip))


class HintSummary(nn.Module):
    """Local hints pooled at the bottleneck: their mean color over the whole photo and over
    windows of about 24, 56 and 120 pixels, each with a flag saying whether any hint is there.
    That is what makes Levin's propagation strong with few dots (every pixel sees some hint);
    the network decides from L where edges should stop it. Starts as a no-op (zero last
    layer), so a network trained before it existed resumes unchanged."""

    WINDOWS = (3, 7, 15)  # at 1/8 resolution
    CELL = 8

    def __init__(self, cout):
        super().__init__()
        n = 3 * (1 + len(self.WINDOWS))
        self.net = nn.Sequential(nn.Conv2d(n, cout, 1), nn.ReLU(True), nn.Conv2d(cout, cout, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @staticmethod
    def _mean_and_flag(ab_sum, mask_sum, pixels):
        """Mean hint ab where any hint is (else 0), and a 0/1 flag; sums are of per-cell means."""
        mean = ab_sum / torch.clamp(mask_sum, min=1e-6)
        return [mean, torch.clamp(mask_sum * pixels, 0.0, 1.0)]

    def forward(self, hint_ab, hint_mask):
        c = self.CELL
        m = F.avg_pool2d(hint_mask, c)
        ab = F.avg_pool2d(hint_ab * hint_mask, c) / AB_SCALE
        h, w = m.shape[2], m.shape[3]
        parts = [t.expand(-1, -1, h, w) for t in
                 self._mean_and_flag(ab.sum((2, 3), keepdim=True), m.sum((2, 3), keepdim=True), c * c)]
        for k in self.WINDOWS:
            pool = lambda t: F.avg_pool2d(t, k, stride=1, padding=k // 2, count_include_pad=False)  # noqa: E731
            parts += self._mean_and_flag(pool(ab), pool(m), c * c * k * k)
        return self.net(torch.cat(parts, 1))


class PropGate(nn.Module):
    """Per-pixel weight in [0, 1] of the propagated hints against the network's own ab, from the
    last features and the hints' reach. Zero where the photo has no hint at all, so automatic
    colorization is the network's alone."""

    def __init__(self, cin):
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, 1)
        self.reach = nn.Conv2d(1, 1, 1)
        for layer in (self.conv, self.reach):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, feat, reach, hint_mask):
        any_hint = torch.amax(hint_mask, dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.conv(feat) + self.reach(reach)) * any_hint


class ColorNet(nn.Module):
    def __init__(self, config: NetConfig = CONFIGS["small"]):
        super().__init__()
        self.config = config
        ch = config.channels()
        m = config.mid_convs
        self.conv1 = conv_block(4, ch["c1"], 2)
        self.conv2 = conv_block(ch["c1"], ch["c2"], 2)
        self.conv3 = conv_block(ch["c2"], ch["c3"], m)
        self.conv4 = conv_block(ch["c3"], ch["c4"], m)
        self.global_net = nn.Sequential(
            nn.Conv2d(GLOBAL_DIM, ch["c4"], 1), nn.ReLU(True),
            nn.Conv2d(ch["c4"], ch["c4"], 1), nn.ReLU(True),
            nn.Conv2d(ch["c4"], ch["c4"], 1),
        )
        self.hint_summary = HintSummary(ch["c4"])
        self.conv5 = conv_block(ch["c4"], ch["c4"], m, dilation=2)
        self.conv6 = conv_block(ch["c4"], ch["c4"], m, dilation=2)
        self.conv7 = conv_block(ch["c4"], ch["c4"], m)
        self.up8 = UpSkip(ch["c4"], ch["c3"], ch["c8"])
        self.conv8 = conv_block(ch["c8"], ch["c8"], 2)
        self.up9 = UpSkip(ch["c8"], ch["c2"], ch["c9"])
        self.conv9 = conv_block(ch["c9"], ch["c9"], 1)
        self.up10 = UpSkip(ch["c9"], ch["c1"], ch["c10"])
        self.conv10 = nn.Sequential(nn.Conv2d(ch["c10"], ch["c10"], 3, padding=1), nn.LeakyReLU(0.2, True))
        self.ab_head = nn.Conv2d(ch["c10"], 2, 1)
        self.dist_head = nn.Conv2d(ch["c8"], NUM_BINS, 1)
        # the propagated hints: into the first conv (a no-op at first) and through the gate
        self.prop_in = nn.Conv2d(2, ch["c1"], 3, padding=1)
        self.reach_in = nn.Conv2d(1, ch["c1"], 3, padding=1)
        for layer in (self.prop_in, self.reach_in):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.prop_gate = PropGate(ch["c10"])

    def forward(self, l, hint_ab, hint_mask, global_hints, hint_prop=None):
        ab, dist, _ = self.run(l, hint_ab, hint_mask, global_hints, hint_prop=hint_prop)
        return ab, dist

    def run(self, l, hint_ab, hint_mask, global_hints, fuse=None, hint_prop=None):
        """Block by block: (ab, dist_logits, {layer name: feature}).

        fuse: None, or callable(name, feature) -> feature applied after each block
        (for conv4: after the hint injections); instance-aware fusion hooks in here.
        hint_prop: None (the network alone), or the propagated hints (N, 3, H, W): ab and reach."""
        feats = {}

        def tap(name, x):
            if fuse is not None:
                x = fuse(name, x)
            feats[name] = x
            return x

        x = torch.cat([(l - 50.0) / 50.0, hint_ab / AB_SCALE, hint_mask], dim=1)
        first = self.conv1[0](x)
        if hint_prop is not None:
            first = first + self.prop_in(hint_prop[:, :2] / AB_SCALE) + self.reach_in(hint_prop[:, 2:])
        f1 = tap("conv1", self.conv1[1:](first))
        f2 = tap("conv2", self.conv2(F.avg_pool2d(f1, 2)))
        f3 = tap("conv3", self.conv3(F.avg_pool2d(f2, 2)))
        f4 = self.conv4(F.avg_pool2d(f3, 2))
        f4 = f4 + self.global_net(global_hints[:, :, None, None]) + self.hint_summary(hint_ab, hint_mask)
        f4 = tap("conv4", f4)
        f5 = tap("conv5", self.conv5(f4))
        f6 = tap("conv6", self.conv6(f5))
        f7 = tap("conv7", self.conv7(f6))
        f8 = tap("conv8", self.conv8(self.up8(f7, f3)))
        f9 = tap("conv9", self.conv9(self.up9(f8, f2)))
        f10 = tap("conv10", self.conv10(self.up10(f9, f1)))
        ab = torch.tanh(self.ab_head(f10)) * AB_SCALE
        if hint_prop is not None:
            gate = self.prop_gate(f10, hint_prop[:, 2:], hint_mask)
            ab = ab + gate * (hint_prop[:, :2] - ab)
        return ab, self.dist_head(f8), feats


def build(name="small"):
    return ColorNet(CONFIGS[name])
