"""Device selection: an explicit name, else ``$PIXAL3D_DEVICE``, else CUDA → MPS → CPU."""

from __future__ import annotations

import os

import torch

from pixal3d.errors import UserError

ENV_VAR = "PIXAL3D_DEVICE"


def available_devices() -> list[str]:
    """Names of the device types usable here, best first (always ends with ``'cpu'``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def select_device(name: str | None = None) -> torch.device:
    """Return the torch device to run on.

    ``name`` (e.g. ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'``) wins; otherwise the environment
    variable ``PIXAL3D_DEVICE``; otherwise the best available of CUDA, MPS, CPU. A requested device
    that is not available raises :class:`UserError`.
    """
    name = name or os.environ.get(ENV_VAR) or available_devices()[0]
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {name!r} (use cpu, cuda, cuda:N or mps)") from exc
    if device.type not in available_devices():
        raise UserError(f"device {name!r} is not available here (available: {', '.join(available_devices())}); "
                        f"pick one of those, or leave the device out to use the best one")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} is not available: {torch.cuda.device_count()} CUDA device(s) found "
                        f"(cuda:0 … cuda:{max(torch.cuda.device_count() - 1, 0)})")
    return device
