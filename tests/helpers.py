"""Test helpers: reference fixtures from ``../shared/reference`` and tolerance checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PIXAL3D_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
EVALSETS = SHARED / "evalsets"


class Fixture:
    """One recorded reference run: ``tensors`` (name → tensor) and ``meta`` (the JSON)."""

    def __init__(self, name: str):
        path = REFERENCE / f"{name}.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"reference fixture {path} is missing (expected ../shared/reference beside the checkout)")
        self.name = name
        self.tensors = load_file(str(path))
        self.meta = json.loads((REFERENCE / f"{name}.json").read_text())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def weights(self, prefix: str = "w.") -> dict[str, torch.Tensor]:
        """The stored weights under ``prefix``, with the prefix removed (official key names)."""
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}



def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, what: str = "") -> None:
    """Relative error ``max|a-e| / max(max|e|, 1e-12)`` ≤ ``rtol`` (shapes must match)."""
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    err = (a - e).abs().max().item() / max(e.abs().max().item(), 1e-12) if e.numel() else 0.0
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.1g}"
