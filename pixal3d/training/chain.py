"""A chain of training runs, each on top of the previous one, checked whole before the first step.

Each stage of a Pixal3D model trains on top of an earlier run (``trainer.args.base_pipeline``): the
checkpoint of a run holds every stage of its base plus its own. A chain whose bases are wrong fails only when
a later stage starts, possibly hours in. :func:`check_chain` simulates the chain instead: for each run it
resolves the base (an earlier run of the chain, or an existing pipeline/run folder), takes what that base
will hold (:meth:`Trainer.products` of every run before it) and checks :meth:`Trainer.base_requirements`,
so a broken chain is one line before anything trains. A run may stand on several runs trained apart
(``base_pipeline: [a, b]``, merged by :func:`pixal3d.training.trainer.merge_pipeline_folders`), which lets
independent runs of one chain train at the same time (:func:`base_runs` tells what each waits for).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pixal3d.errors import UserError
from pixal3d.models.pipeline_folder import open_pipeline_folder
from pixal3d.training.config import TrainConfig
from pixal3d.training.registry import trainer_class
from pixal3d.training.trainer import base_paths, folder_contents, resolve_pipeline


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
        bases = base_paths(args.get("base_pipeline"))
        contents: list[str] = []
        for base in bases:
            held = _base_contents(run.name, base, root, outputs, holds)
            twice = sorted(set(held) & set(contents) - {"image_encoder"})
            if twice:
                raise UserError(f"run {run.name}: {', '.join(twice)} would come from two of its bases; "
                                "a stage may come from one base only")
            contents += held
        missing = sorted(set(cls.base_requirements(args)) - set(contents))
        if missing:
            raise UserError(f"run {run.name}: its base ({', '.join(bases) or 'none'}) will lack {', '.join(missing)}; "
                            "order the runs so an earlier one makes it and name that run as base_pipeline")
        holds[run.name] = sorted(set(contents) | set(cls.products(args, run.config.models)))
    return holds


def base_runs(run: ChainRun, runs: list[ChainRun], root: str | os.PathLike = ".") -> list[str]:
    """Names of the runs of ``runs`` that ``run`` stands on (its ``base_pipeline`` entries that are runs)."""
    outputs = {_resolve(r.output_dir, Path(root)): r.name for r in runs}
    return [outputs[p] for p in (_resolve(b, Path(root)) for b in base_paths(run.config.trainer_args.get("base_pipeline")))
            if p in outputs]


def _base_contents(name: str, base: str, root: Path, outputs: dict[Path, str], holds: dict[str, list[str]]) -> list[str]:
    resolved = _resolve(base, root)
    if resolved in outputs:
        earlier = outputs[resolved]
        if earlier not in holds:
            raise UserError(f"run {name}: base_pipeline {base} is run {earlier}, which comes later in the chain")
        return holds[earlier]
    try:
        return folder_contents(open_pipeline_folder(resolve_pipeline(resolved)))
    except UserError:
        raise UserError(f"run {name}: base_pipeline {base} is neither an earlier run of the chain nor an "
                        "existing pipeline or run folder") from None
