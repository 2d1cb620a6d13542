"""DINOv3 ViT feature backbone on the Pixal3D path (``transformers.DINOv3ViTModel``).

Pixal3D runs the patch embedding (sequence ``[CLS, reg0..reg3, patches…]``), every transformer layer
with the model's axial RoPE, and then a LayerNorm WITHOUT affine (eps 1e-5) over all tokens; the
model's own affine final ``norm`` is not used. ``global`` = the 5 prefix tokens; the patch tokens,
row-major, form the low-resolution feature map ``[B, C, S/16, S/16]`` (rows = image y downward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pixal3d.conditioning.encoders import ImageEncoder, imagenet_normalize
from pixal3d.errors import UserError
from pixal3d.paths import COMPONENTS, component_path

#: Official DINOv3 ViT-L/16 (``facebook/dinov3-vitl16-pretrain-lvd1689m``) architecture.
VITL16_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_register_tokens": 4,
    "patch_size": 16,
    "rope_theta": 100.0,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "query_bias": True,
    "key_bias": False,
    "value_bias": True,
    "proj_bias": True,
    "mlp_bias": True,
    "use_gated_mlp": False,
    "image_size": 224,
}

FINAL_LN_EPS = 1e-5


class DINOv3Encoder(ImageEncoder):
    """DINOv3 through the :class:`ImageEncoder` interface (``uses_naf = True``).

    ``model`` is a ``transformers.DINOv3ViTModel`` in eval mode; ``dtype`` is the compute dtype of
    the layers (float32 default, or bfloat16); outputs are always float32.
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16):
            raise UserError(f"DINOv3 dtype must be float32 or bfloat16, got {dtype}")
        self.model = model.to(dtype).eval().requires_grad_(False)
        config = model.config
        self.channels = config.hidden_size
        self.num_global_tokens = 1 + config.num_register_tokens
        self.patch_size = config.patch_size
        self.uses_naf = True
        self.dtype = dtype

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path | None = None, dtype: torch.dtype = torch.float32) -> "DINOv3Encoder":
        """Load ``config.json`` + weights (Hugging Face layout) from ``folder`` (default: the ``dinov3`` component folder).

        Nothing is downloaded (``local_files_only``); the global RNG is left untouched.
        """
        from transformers import DINOv3ViTModel

        folder = Path(folder) if folder is not None else component_path("dinov3")
        has_weights = folder.is_dir() and (any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin")))
        if not (folder / "config.json").is_file() or not has_weights:
            raise UserError(
                f"DINOv3 weights not found in {folder}: put config.json and model.safetensors from "
                f"{COMPONENTS['dinov3'][2]} there (or set PIXAL3D_MODELS)"
            )
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a local folder loads in a moment: no second progress bar on stderr
        try:
            with torch.random.fork_rng(devices=[]):
                model = DINOv3ViTModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError, RuntimeError, KeyError) as exc:  # a damaged or foreign folder
            reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise UserError(f"cannot load DINOv3 from {folder}: {reason} (copy the folder from "
                            f"{COMPONENTS['dinov3'][2]} again)") from exc
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        return cls(model, dtype=dtype)

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "DINOv3Encoder":
        """Build from a config dict (``DINOv3ViTConfig`` fields) and an optional state dict.

        ``state_dict`` may use the official checkpoint keys (``layer.{i}.…``) or the current
        transformers keys (``model.layer.{i}.…``); it is loaded strictly. Without it the weights are
        random (seeded from a private generator, the global RNG is untouched) — for benchmarks only.
        """
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        cfg = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "dtype", "model_type")}
        hf_config = DINOv3ViTConfig(**cfg)
        hf_config._attn_implementation = "sdpa"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = DINOv3ViTModel(hf_config)
        if state_dict is not None:
            own = model.state_dict()
            renamed = {}
            for key, value in state_dict.items():
                renamed[key if key in own or not key.startswith("layer.") else "model." + key] = value
            model.load_state_dict(renamed, strict=True)
        return cls(model, dtype=dtype)

    # --- forward -----------------------------------------------------------------------------
    @torch.no_grad()
    def tokens(self, image_01: torch.Tensor) -> torch.Tensor:
        """``image_01 [B,3,S,S]`` in ``[0,1]`` → all tokens after the non-affine LayerNorm, float32 ``[B, 5+(S/16)², C]``."""
        self.check_size(image_01)
        device = next(self.model.parameters()).device
        pixels = imagenet_normalize(image_01.to(device=device, dtype=torch.float32)).to(self.dtype)
        hidden = self.model.embeddings(pixels)
        position_embeddings = self.model.rope_embeddings(pixels)
        for layer in self.model.model.layer:
            hidden = layer(hidden, position_embeddings=position_embeddings)
        return F.layer_norm(hidden.float(), (self.channels,), eps=FINAL_LN_EPS)

    @torch.no_grad()
    def encode(self, image_01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_01 [B,3,S,S]`` → ``(global [B,5,C], patch_map [B,C,S/16,S/16])`` float32 (rows = image y)."""
        tokens = self.tokens(image_01)
        b, side = tokens.shape[0], image_01.shape[-1] // self.patch_size
        prefix = self.num_global_tokens
        patch = tokens[:, prefix:].reshape(b, side, side, self.channels).permute(0, 3, 1, 2).contiguous()
        return tokens[:, :prefix].contiguous(), patch
