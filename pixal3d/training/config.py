"""Training configuration: the JSON given to ``train.py --config`` (upstream TRELLIS.2 layout, checked here).

```json
{
  "trainer": {"name": "SparseStructureFlowTrainer", "args": {...}},
  "models": {"sparse_structure_flow_model": {"name": "SparseStructureFlowModel", "args": {...}}},
  "dataset": {"name": "ViewDataset", "args": {"image_size": 64, "ss_resolution": 16}},
  "optimizer": {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0},
  "max_steps": 1000, "batch_size": 8, "grad_clip": 1.0, "ema_rate": 0.999,
  "mixed_precision": "none", "log_every": 10, "save_every": 500, "seed": 0
}
```

``batch_size`` is the *global* batch (split evenly across the ranks). Every error is a one-line
:class:`~pixal3d.errors.UserError`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pixal3d.errors import UserError
from pixal3d.utils.files import read_json

if TYPE_CHECKING:
    from torch.utils.data import Dataset

MIXED_PRECISION = ("none", "bf16")


@dataclass
class TrainConfig:
    """A validated training configuration (see the module docstring for the JSON layout)."""

    trainer: dict[str, Any]
    models: dict[str, dict[str, Any]]
    dataset: dict[str, Any] = field(default_factory=lambda: {"name": "ViewDataset", "args": {}})
    optimizer: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0})
    max_steps: int = 1000
    batch_size: int = 8
    grad_clip: float | None = 1.0
    ema_rate: float = 0.9999
    mixed_precision: str = "none"
    log_every: int = 10
    save_every: int = 1000
    seed: int = 0
    lr_warmup_steps: int = 0
    num_workers: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready data."""
        return asdict(self)

    @property
    def trainer_name(self) -> str:
        return str(self.trainer["name"])

    @property
    def trainer_args(self) -> dict[str, Any]:
        return dict(self.trainer.get("args") or {})


def _spec(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise UserError(f"config: {what} must be an object with a \"name\" string and optional \"args\"")
    if not isinstance(value.get("args", {}), dict):
        raise UserError(f"config: {what}.args must be an object")
    return value


def _number(data: dict, key: str, kind: type, low: float | None = None, high: float | None = None,
            allow_none: bool = False) -> Any:
    value = data[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise UserError(f"config: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise UserError(f"config: {key} must be in [{low}, {high}], got {value}")
    return kind(value)


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a parsed JSON object into a :class:`TrainConfig` (:class:`UserError` on any problem)."""
    if not isinstance(data, dict):
        raise UserError(f"{source} must be a JSON object")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{source}: unknown keys {unknown} (known: {sorted(known)})")
    for key in ("trainer", "models"):
        if key not in data:
            raise UserError(f"{source}: missing \"{key}\"")
    values = {k: data[k] for k in known if k in data}
    cfg = TrainConfig(**values)
    _spec(cfg.trainer, "trainer")
    if not isinstance(cfg.models, dict) or not cfg.models:
        raise UserError(f"{source}: \"models\" must map stage keys to {{\"name\", \"args\"}} objects")
    for key, spec in cfg.models.items():
        _spec(spec, f"models.{key}")
    _spec(cfg.dataset, "dataset")
    opt = cfg.optimizer
    if not isinstance(opt, dict) or set(opt) - {"lr", "betas", "weight_decay", "eps"}:
        raise UserError(f"{source}: optimizer must be an object with lr, betas, weight_decay (and eps)")
    opt.setdefault("lr", 1e-4)
    opt.setdefault("betas", [0.9, 0.999])
    opt.setdefault("weight_decay", 0.0)
    _number(opt, "lr", float, 0.0)
    _number(opt, "weight_decay", float, 0.0)
    betas = opt["betas"]
    if not (isinstance(betas, list) and len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        raise UserError(f"{source}: optimizer.betas must be two numbers in [0, 1), got {betas!r}")
    d = cfg.as_dict()
    cfg.max_steps = _number(d, "max_steps", int, 1)
    cfg.batch_size = _number(d, "batch_size", int, 1)
    cfg.grad_clip = _number(d, "grad_clip", float, 0.0, allow_none=True)
    cfg.ema_rate = _number(d, "ema_rate", float, 0.0, 1.0)
    cfg.log_every = _number(d, "log_every", int, 1)
    cfg.save_every = _number(d, "save_every", int, 1)
    cfg.seed = _number(d, "seed", int, 0)
    cfg.lr_warmup_steps = _number(d, "lr_warmup_steps", int, 0)
    cfg.num_workers = _number(d, "num_workers", int, 0, 64)
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise UserError(f"{source}: mixed_precision must be one of {MIXED_PRECISION}, got {cfg.mixed_precision!r}")
    return cfg


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a training config JSON file."""
    return parse_config(read_json(path, "config file"), str(path))


def build_dataset(cfg: TrainConfig, roots: list[Path]) -> tuple[Dataset, Callable]:
    """The config's dataset over every root (concatenated) and its collate function; each item holds what the
    trainer reads (:attr:`Trainer.dataset_fields`, unless the config's dataset args name ``fields``)."""
    from torch.utils.data import ConcatDataset

    from pixal3d.data.dataset import ViewDataset, collate_views
    from pixal3d.training.registry import trainer_class  # the trainers import this module

    name, args = cfg.dataset["name"], dict(cfg.dataset.get("args") or {})
    if name != "ViewDataset":
        raise UserError(f"unknown dataset {name!r} (known: ViewDataset)")
    args.setdefault("fields", trainer_class(cfg.trainer_name).dataset_fields)
    try:
        parts = [ViewDataset(root, **args) for root in roots]
    except TypeError as exc:
        raise UserError(f"bad dataset args {args}: {exc}") from exc
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    if len(dataset) == 0:
        raise UserError(f"no training samples in {', '.join(map(str, roots))}")
    return dataset, collate_views
