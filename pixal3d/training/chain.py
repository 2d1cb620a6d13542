"""A chain of training runs, each on top of the previous one, checked whole before the first step.

Each stage of a Pixal3D model trains on top of an earlier run (``trainer.args.base_pipeline``): the
checkpoint of a run holds every stage of its base plus its own. A chain whose bases are wrong fails only when
a later stage starts, possibly hours in. :func:`check_chain` simulates the chain instead: for each run it
resolves the base (an earlier run of the chain, or an existing pipeline/run folder), takes what that base
will hold (:meth:`Trainer.products` of every run before it) and checks :meth:`Trainer.base_requirements`,
so a broken chain is one line before anything trains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pixal3d.errors import UserError
from pixal3d.models.pipeline_folder import open_pipeline_folder
from pixal3d.training.config import TrainConfig
from pixal3d.training.registry import trainer_class
from pixal3d.training.trainer import folder_contents, resolve_pipeline


@dataclass(frozen=True)
class ChainRun:
    """One run of a chain: its name, config and output (run) folder. Relative paths are taken from ``root``."""

    name: str
    config: TrainConfig
    output_dir: Path


def _resolve(path: str | os.PathLike, root: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else root / p).resolve()


def check_chain(runs: list[ChainRun], root: str | os.PathLike = ".") -> dict[str, list[str]]:
    """:class:`UserError` (one line) when a run's base is not an earlier run or an existing folder, or will not
    hold what its trainer needs. Returns, per run name, the stages its checkpoints will hold."""
    root = Path(root)
    outputs = {_resolve(run.output_dir, root): run.name for run in runs}
    holds: dict[str, list[str]] = {}
    for run in runs:
        cls = trainer_class(run.config.trainer_name)
        args = run.config.trainer_args
        base = args.get("base_pipeline")
        if base:
            resolved = _resolve(base, root)
            if resolved in outputs:
                earlier = outputs[resolved]
                if earlier not in holds:
                    raise UserError(f"run {run.name}: base_pipeline {base} is run {earlier}, which comes later in the chain")
                contents = holds[earlier]
            else:
                try:
                    contents = folder_contents(open_pipeline_folder(resolve_pipeline(resolved)))
                except UserError:
                    raise UserError(f"run {run.name}: base_pipeline {base} is neither an earlier run of the chain nor an "
                                    "existing pipeline or run folder") from None
        else:
            contents = []
        missing = sorted(set(cls.base_requirements(args)) - set(contents))
        if missing:
            raise UserError(f"run {run.name}: its base ({base or 'none'}) will lack {', '.join(missing)}; "
                            "order the runs so an earlier one makes it and name that run as base_pipeline")
        holds[run.name] = sorted(set(contents) | set(cls.products(args, run.config.models)))
    return holds
