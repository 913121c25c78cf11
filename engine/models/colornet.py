"""A hint-guided colorization U-Net in the layout of Zhang et al. 2017 (SIGGRAPH17).

Inputs: L, local hints (ab + mask) at full resolution, and a global-hint vector
(ab histogram, saturation, on-flags) injected at the 1/8-resolution bottleneck.
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

    def forward(self, l, hint_ab, hint_mask, global_hints):
        x = torch.cat([(l - 50.0) / 50.0, hint_ab / AB_SCALE, hint_mask], dim=1)
        f1 = self.conv1(x)
        f2 = self.conv2(F.avg_pool2d(f1, 2))
        f3 = self.conv3(F.avg_pool2d(f2, 2))
        f4 = self.conv4(F.avg_pool2d(f3, 2))
        f4 = f4 + self.global_net(global_hints[:, :, None, None])
        f7 = self.conv7(self.conv6(self.conv5(f4)))
        f8 = self.conv8(self.up8(f7, f3))
        f9 = self.conv9(self.up9(f8, f2))
        f10 = self.conv10(self.up10(f9, f1))
        ab = torch.tanh(self.ab_head(f10)) * AB_SCALE
        return ab, self.dist_head(f8)


def build(name="small"):
    return ColorNet(CONFIGS[name])
