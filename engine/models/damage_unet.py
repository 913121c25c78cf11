"""The damage detector: a small U-Net on a photo's lightness that gives each pixel the
probability that it is a scratch, crack, speck, crease, tear or stain.

Why this shape: detection must look at every pixel of a 12 MP scan in a few seconds on
two CPU cores, and a 1-pixel crack must stay 1 pixel wide. The input is folded 2x2 into
4 channels (pixel unshuffle, lossless) so every convolution runs at half resolution or
less, and the output is unfolded the same way (pixel shuffle): full-resolution masks for
a quarter of the cost.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DamageUNet(nn.Module):
    """L (N, 1, H, W) in 0..100, H and W multiples of size_multiple -> damage logits (N, 1, H, W)."""

    def __init__(self, widths):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        cin = 4
        for w in self.widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(_block(self.widths[i + 1] + self.widths[i], self.widths[i])
                                for i in reversed(range(len(self.widths) - 1)))
        self.head = nn.Conv2d(self.widths[0], 4, 1)

    @property
    def size_multiple(self):
        return 2 ** len(self.widths)  # the fold, then one halving per level below the first

    def forward(self, l):
        x = F.pixel_unshuffle((l - 50.0) / 50.0, 2)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        return F.pixel_shuffle(self.head(x), 2)
