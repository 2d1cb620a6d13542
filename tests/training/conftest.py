"""Shared fixtures: a tiny built dataset (3 synthetic assets × 2 views, 32³ voxels, 64² images) and configs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pixal3d.data import build as B
from pixal3d.data.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "train"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    synthesize(3, root / "synth", seed=11, workers=1, sheet=False)
    B.build_dataset(root / "synth", root / "data", B.BuildConfig(views=2, resolution=32, image_size=64, seed=0), workers=1)
    return root / "data"


def load_tiny_config(name: str, **top) -> dict:
    """``configs/train/<name>.json`` for a run on its own: the shipped chain's ``base_pipeline`` is dropped (give
    one in ``trainer_args``), top-level keys are replaced (``trainer_args`` updates trainer.args)."""
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["trainer"]["args"].pop("base_pipeline", None)
    cfg["trainer"]["args"].update(top.pop("trainer_args", {}))
    cfg.update(top)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(json.dumps(cfg))
    return path
