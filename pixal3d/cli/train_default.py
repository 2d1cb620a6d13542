"""``pixal3d train-default``: build the default model's data, train its chain of runs, write the model folder.

See :mod:`pixal3d.training.recipe`. Every step resumes, so the command can be interrupted and rerun.
"""

from __future__ import annotations

import sys

from pixal3d.errors import UserError


def register(subparsers) -> None:
    """Add ``train-default`` to the ``pixal3d`` parser."""
    p = subparsers.add_parser("train-default", help="data → every training run → models/pixal3d-small (resumable)",
                              description="Run the default model's recipe (configs/train/small/recipe.json): synthesise "
                                          "and import the assets, build the dataset, check the whole chain of runs, "
                                          "train each unfinished run in order and export the last checkpoint as the "
                                          "model folder (fp16 weights). Rerun to continue after an interruption.")
    p.add_argument("--recipe", default=None, help="recipe JSON (default: configs/train/small/recipe.json)")
    p.add_argument("--steps", choices=["all", "data", "check", "train", "export", "card"], default="all",
                   help="only this part (default: all of them in order)")
    p.add_argument("--max_steps", type=int, default=None, help="override every run's max_steps (smoke runs)")
    p.add_argument("--num_gpus", type=int, default=-1, help="as train.py: -1 all visible GPUs, 0 CPU")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once when their bases allow (default 1)")
    p.add_argument("--workers", type=int, default=None, help="data worker processes (default: all cores)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_train_default)


def _train_default(args) -> int:
    from pixal3d.training.chain import check_chain
    from pixal3d.training.recipe import (DEFAULT_RECIPE, build_data, export_ablation, export_model, load_recipe,
                                         run_finished, train_chain)

    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {args.jobs}")
    recipe = load_recipe(args.recipe or DEFAULT_RECIPE)
    if args.steps in ("all", "data"):
        counts = build_data(recipe, workers=args.workers, progress=not args.no_progress)
        print(f"data: {counts['built']} assets built, {counts['kept']} kept, {counts['failed']} failed → {recipe.data}")
    if args.steps == "check":
        holds = check_chain(recipe.chain(args.max_steps), recipe.root)
        for name, stages in holds.items():
            print(f"{name}: {', '.join(stages)}")
    if args.steps in ("all", "train"):
        trained = train_chain(recipe, args.max_steps, args.num_gpus, progress=not args.no_progress, jobs=args.jobs)
        print(f"trained: {', '.join(trained) or 'nothing (every run finished)'}", file=sys.stderr)
    if args.steps in ("all", "export"):
        print(f"model folder: {export_model(recipe, max_steps=args.max_steps)}")
        for name in recipe.ablations:
            if run_finished(recipe.runs / name, next(r for r in recipe.chain(args.max_steps) if r.name == name).config.max_steps):
                print(f"ablation {name}: {export_ablation(recipe, name, args.max_steps)}")
    if args.steps == "card":
        from pixal3d.training.card import write_card

        print(f"model card: {write_card(recipe, args.max_steps)}")
    return 0
