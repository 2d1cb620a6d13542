"""``pixal3d compare A B``: paired comparison of two evaluation runs (:mod:`pixal3d.evaluation.compare`)."""

from __future__ import annotations

import argparse

from pixal3d.cli.options import non_negative_int, positive_int


def register(subparsers) -> None:
    """Add the ``compare`` sub-command."""
    from pixal3d.evaluation.compare import HEADLINE_METRICS

    p = subparsers.add_parser(
        "compare", help="is one evaluated model better than another, or within noise? (paired, per mesh)",
        description="Pair two `pixal3d evaluate` runs of the same protocol mesh by mesh: mean difference, wins and a "
                    "bootstrap 95 % interval per metric; a side is better only when the interval excludes zero.")
    p.add_argument("a", help="run A: an evaluate output folder or its results.json")
    p.add_argument("b", help="run B: an evaluate output folder or its results.json")
    p.add_argument("--method-a", default=None, help="method of run A (default: its single-view model)")
    p.add_argument("--method-b", default=None, help="method of run B (default: its single-view model)")
    p.add_argument("--metric", action="append", default=None,
                   help=f"metric to compare (repeatable; default {', '.join(HEADLINE_METRICS)})")
    p.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the comparison as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``pixal3d compare``."""
    from pixal3d.evaluation.compare import HEADLINE_METRICS, compare_runs, load_results, markdown
    from pixal3d.utils.files import write_json

    metrics = tuple(dict.fromkeys(args.metric)) if args.metric else HEADLINE_METRICS
    comparison = compare_runs(load_results(args.a), load_results(args.b), args.method_a, args.method_b, metrics,
                              args.resamples, args.seed)
    if args.json:
        write_json(args.json, comparison)
    print(markdown(comparison), end="")
    return 0
