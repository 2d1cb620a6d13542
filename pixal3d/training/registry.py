"""Trainer classes by their config name (``trainer.name``)."""

from __future__ import annotations

from pixal3d.errors import UserError
from pixal3d.training.flow_matching import SparseStructureFlowTrainer
from pixal3d.training.sc_vae import ShapeVaeTrainer, TexVaeTrainer
from pixal3d.training.slat_flow import ShapeSLatFlowTrainer, TexSLatFlowTrainer
from pixal3d.training.trainer import Trainer
from pixal3d.training.vae import SparseStructureVaeTrainer

TRAINERS: dict[str, type[Trainer]] = {
    cls.name: cls for cls in (SparseStructureVaeTrainer, SparseStructureFlowTrainer, ShapeSLatFlowTrainer,
                              TexSLatFlowTrainer, ShapeVaeTrainer, TexVaeTrainer)
}


def trainer_class(name: str) -> type[Trainer]:
    """The trainer class called ``name``; :class:`UserError` listing the known names otherwise."""
    if name not in TRAINERS:
        raise UserError(f"unknown trainer {name!r} (known: {', '.join(sorted(TRAINERS))})")
    return TRAINERS[name]
