"""Where local model folders live. Nothing is ever downloaded: weights are read from here.

The models root is ``$PIXAL3D_MODELS`` if set, else the ``models/`` folder of the checkout (the
parent of the ``pixal3d`` package). Each component has a conventional sub-folder; every loader
also accepts an explicit path.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PIXAL3D_MODELS"

#: component → (sub-folder of the models root, what it holds, where it comes from)
COMPONENTS: dict[str, tuple[str, str, str]] = {
    "pixal3d-small": ("pixal3d-small", "the project's own default model (pipeline.json + ckpts/)", "trained by this project"),
    "pixal3d": ("Pixal3D", "official Pixal3D pipeline (pipeline.json + ckpts/)", "huggingface.co/TencentARC/Pixal3D"),
    "trellis2": ("TRELLIS.2-4B", "official TRELLIS.2 pipeline (pipeline.json + ckpts/)", "huggingface.co/microsoft/TRELLIS.2-4B"),
    "dinov3": ("dinov3-vitl16-pretrain-lvd1689m", "DINOv3 ViT-L/16 (config.json + model.safetensors)", "huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m"),
    "naf": ("naf", "NAF upsampler weights naf_release.pth", "github.com/valeoai/NAF releases"),
    "birefnet": ("RMBG-2.0", "background removal (BiRefNet / RMBG-2.0, HF layout)", "huggingface.co/briaai/RMBG-2.0 or ZhengPeng7/BiRefNet"),
    "moge": ("moge-2-vitl", "MoGe-2 FOV and scene-depth estimator (model.pt)", "huggingface.co/Ruicheng/moge-2-vitl"),
}


def models_root() -> Path:
    """The folder that holds the model sub-folders (may not exist yet)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "models"


def component_path(name: str) -> Path:
    """Conventional location of component ``name`` (a key of :data:`COMPONENTS`)."""
    return models_root() / COMPONENTS[name][0]
