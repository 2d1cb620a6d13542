"""``pixal3d evaluate``: the fidelity benchmark (ground truth with known cameras, model and baselines)."""

from __future__ import annotations

import argparse
import sys

from pixal3d.cli.options import non_negative_int, positive_int
from pixal3d.errors import UserError


def _view_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of view counts: {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"view counts must be positive, got {text!r}")
    return tuple(dict.fromkeys(counts))


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    from pixal3d.evaluation.methods import BASELINES
    from pixal3d.evaluation.runner import DEFAULT_MESHES

    p = subparsers.add_parser("evaluate", help="fidelity benchmark: model and baselines against ground-truth meshes")
    p.add_argument("--model", default=None,
                   help="model folder (pipeline.json + ckpts/) or a name under the models root; default models/pixal3d-small "
                        "unless only --baseline is given")
    p.add_argument("--meshes", default=None, help=f"folder of OBJ/PLY/GLB/glTF meshes or one file (default {DEFAULT_MESHES})")
    p.add_argument("-o", "--output", required=True, help="output folder (results.json, results.md, sheet.png, glb/)")
    p.add_argument("--views-per-mesh", type=positive_int, default=4, help="cameras per mesh for --subset full (default 4)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="camera seed (default 0)")
    p.add_argument("--subset", choices=("quick", "full"), default="full",
                   help="quick: 8 fixed meshes x 1 view (see docs/evaluation.md); full: every mesh x K views")
    p.add_argument("--baseline", action="append", default=None, metavar="NAME",
                   help=f"score a baseline ({', '.join(BASELINES)}); repeat or comma-separate. Without --model only the "
                        "baselines run; with a model the default is sphere,silhouette_hull")
    p.add_argument("--mode", choices=("oracle", "heuristic"), default="oracle",
                   help="oracle: true camera, full canvas, no alignment; heuristic: the pipeline's own crop and camera, "
                        "then a scale+translation alignment")
    p.add_argument("--num-views", type=_view_counts, default=(1,),
                   help="multi-view protocol, e.g. 1,2,4,6 (view counts > 1 need a multi-view method)")
    p.add_argument("--image-size", type=positive_int, default=512, help="render size in pixels (default 512)")
    p.add_argument("--held-out", type=non_negative_int, default=4, help="held-out cameras around the object (default 4)")
    p.add_argument("--points", type=positive_int, default=50_000, help="surface samples per surface (default 50000)")
    p.add_argument("--up", default=None, help="up axis of every mesh (+y, +z, ...); default: per file from a "
                                              "manifest.json beside the meshes, else +y")
    p.add_argument("--generation-seed", type=int, default=42, help="the model's sampling seed (default 42)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampling steps of every flow (default: the model's)")
    p.add_argument("--resolution", type=positive_int, default=None, help="final voxel resolution (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: the model's flows run with dynamically quantised int8 Linear layers (CPU only; "
                        "changes the numbers, opt-in; default none = exact)")
    p.add_argument("--silhouette", action=argparse.BooleanOptionalAction, default=None,
                   help="hold the model's results to the input silhouettes (default: the model folder's setting)")
    p.add_argument("--images", nargs="?", const="", default=None, metavar="DIR",
                   help="instead of meshes: real photos without ground truth (default folder: the evaluation set's "
                        "images); scores the input-silhouette IoU of the raw surface through the pipeline's camera")
    p.add_argument("--no-sheet", action="store_true", help="do not draw sheet.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def parse_baselines(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(dict.fromkeys(part.strip() for value in values for part in value.split(",") if part.strip()))


def run(args: argparse.Namespace) -> int:
    """Handler of ``pixal3d evaluate``."""
    from pixal3d import paths
    from pixal3d.evaluation.runner import EvalConfig, evaluate

    if args.images is not None:
        return run_images(args)
    baselines = parse_baselines(args.baseline)
    config = EvalConfig(views_per_mesh=args.views_per_mesh, seed=args.seed, subset=args.subset, baselines=baselines,
                        mode=args.mode, num_views=args.num_views, image_size=args.image_size, held_out=args.held_out,
                        points=args.points, up=args.up, generation_seed=args.generation_seed, steps=args.steps,
                        resolution=args.resolution, device=args.device, quantize=args.quantize,
                        silhouette=args.silhouette, sheet=not args.no_sheet)
    config.validate()
    model = None
    if args.model is not None or not baselines:
        from pixal3d.models.pipeline_folder import resolve_model_folder

        if args.model is None and not paths.component_path("pixal3d-small").exists():
            raise UserError(f"no model installed at {paths.component_path('pixal3d-small')}: pass --model FOLDER, "
                            "or --baseline sphere,silhouette_hull for the baselines alone")
        model = resolve_model_folder(args.model)  # checked when the model method opens it
    data = evaluate(args.meshes, args.output, config, model=model, progress=not args.quiet)
    for name, method in data["methods"].items():
        mean = method["mean"]
        parts = [f"{key} {mean[key]:.3f}" for key in ("iou_input", "iou_heldout", "fscore@0.05", "chamfer_l1")
                 if mean.get(key) is not None]
        print(f"{name}: {method['ok']} ok, {method['failed']} failed; " + ", ".join(parts), file=sys.stderr)
    print(f"wrote {args.output}/results.json, results.md" + ("" if args.no_sheet else ", sheet.png"))
    return 0


def run_images(args: argparse.Namespace) -> int:
    """``pixal3d evaluate --images [DIR]``: the photo protocol (:mod:`pixal3d.evaluation.images`)."""
    from pixal3d.evaluation.images import evaluate_images
    from pixal3d.models.pipeline_folder import resolve_model_folder

    if args.meshes is not None or args.baseline or args.num_views != (1,):
        raise UserError("--images scores a model on photos: it takes no --meshes, --baseline or --num-views")
    model = resolve_model_folder(args.model)
    data = evaluate_images(model, args.images or None, args.output, seed=args.generation_seed, steps=args.steps,
                           device=args.device, progress=not args.quiet)
    m = data["mean"]
    print(f"{data['ok']} ok, {data['failed']} failed; IoU {m['iou']:.3f} (precision {m['precision']:.3f}, recall "
          f"{m['recall']:.3f}), held to the silhouette {m['iou_held']:.3f}", file=sys.stderr)
    print(f"wrote {args.output}/results.json, results.md, sheet.png")
    return 0
