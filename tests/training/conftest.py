"""Shared training helpers: the tiny configs (the tiny dataset fixture ``tiny_data`` is in ``tests/conftest.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "train"


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
