"""Damage restoration with partial convolutions (Liu et al., "Image Inpainting for
Irregular Holes Using Partial Convolutions", ECCV 2018), for the photo's lightness.

A partial convolution sees only valid pixels: it convolves x * mask, rescales by
(window size / valid pixels in the window) so a half-hidden window is not darker,
and marks its output valid wherever the window held any valid pixel. Stacked in a
U-Net, the hole shrinks layer by layer until the bottleneck has none, and the
decoder paints it back in from what surrounds it.

Tinct restores L only (0..100): an old photo's damage is in its gray values, and the
colorization runs afterwards on the restored L. Inputs are in natural units; the
normalization lives inside the network, like ColorNet's.

The network adds to a smooth fill instead of painting the holes from nothing: `base` is
the photo with its holes filled by Laplace's equation (engine.restore.harmonic_fill), the
classical fill that is hard to beat on thin scratches, and the network predicts what it
misses (edges running through a hole, texture). Its last layer starts at zero, so an
untrained network gives the harmonic fill, and training can only move away where that
lowers the loss. The network itself still sees only the intact pixels.
Input  l (N, 1, H, W) with anything in the holes, mask (N, 1, H, W): 1 = intact, 0 = damaged,
       base (N, 1, H, W): l with the holes filled smoothly.
Output restored (N, 1, H, W): base + the network's correction; callers keep the intact
pixels (`composite`). H and W must be multiples of 2 ** depth (32 by default).
"""

import torch
from torch import nn
from torch.nn import functional as F


class PartialConv2d(nn.Module):
    """Conv over valid pixels only, with the renormalization and mask update of Liu et al."""

    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("ones", torch.ones(1, 1, kernel, kernel), persistent=False)
        self.stride = stride
        self.window = float(kernel * kernel)

    def forward(self, x, mask):
        with torch.no_grad():
            valid = F.conv2d(mask, self.ones, stride=self.stride, padding=self.ones.shape[-1] // 2)
            new_mask = torch.clamp(valid, 0.0, 1.0)
            ratio = self.window / torch.clamp(valid, min=1.0) * new_mask
        out = self.conv(x * mask) * ratio + self.bias.view(1, -1, 1, 1) * new_mask
        return out, new_mask


class PConvUNet(nn.Module):
    """Encoder of strided partial convs, decoder of nearest upsampling + skip + partial conv."""

    def __init__(self, width=32, depth=5):
        super().__init__()
        chans = [min(width * 2 ** i, width * 8) for i in range(depth)]
        self.depth = depth
        self.enc = nn.ModuleList()
        cin = 1
        for i, c in enumerate(chans):
            self.enc.append(PartialConv2d(cin, c, 7 if i == 0 else (5 if i < 3 else 3), stride=2))
            cin = c
        self.dec = nn.ModuleList()
        skips = [1] + chans[:-1]  # what each decoder level concatenates (the input at the top)
        for i in reversed(range(depth)):
            cout = skips[i] if i > 0 else width // 2
            self.dec.append(PartialConv2d(cin + skips[i], cout, 3))
            cin = cout
        self.head = nn.Conv2d(cin, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, l, mask, base):
        x = (l / 50.0 - 1.0) * mask  # the holes' old content never reaches the network
        feats = [(x, mask)]
        for conv in self.enc:
            x, mask = conv(x, mask)
            x = F.relu(x)
            feats.append((x, mask))
        feats.pop()
        for conv in self.dec:
            skip, skip_mask = feats.pop()
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            mask = F.interpolate(mask, scale_factor=2.0, mode="nearest")
            x, mask = conv(torch.cat([x, skip], 1), torch.max(mask, skip_mask))
            x = F.leaky_relu(x, 0.2)
        return base + self.head(x) * 50.0


def composite(l, mask, restored):
    """Intact pixels keep the photo's own L; only damaged ones take the network's."""
    return l * mask + restored * (1.0 - mask)
