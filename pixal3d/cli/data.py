"""``pixal3d data``: training-data tools, one sub-command each (``synth``, ``preview``).

Add a sub-command by writing ``_register_<name>(sub)`` that sets ``handler=`` and calling it in
:func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixal3d.errors import UserError


def register(subparsers) -> None:
    """Add ``data`` and its sub-commands to the ``pixal3d`` parser."""
    parser = subparsers.add_parser("data", help="make training data (procedural assets, previews)",
                                   description="Training-data tools.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def show_help(args) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=show_help)
    _register_synth(sub)
    _register_preview(sub)


# --------------------------------------------------------------------------------------------------
# synth


def _register_synth(sub) -> None:
    p = sub.add_parser("synth", help="write procedural textured GLB assets, a manifest and a contact sheet",
                       description="Write assets 0..N-1 of a seed as synth_{seed:04d}_{i:06d}.glb with manifest.json "
                                   "(recipes) and contact_sheet.png. Asset i of a seed is the same whatever N or the "
                                   "worker count; existing valid files are kept, so an interrupted run can be resumed.")
    p.add_argument("-n", "--count", type=int, required=True, help="number of assets")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--sheet", action=argparse.BooleanOptionalAction, default=True,
                   help="write contact_sheet.png with a preview of the first 256 assets (default on)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_synth)


def _synth(args) -> int:
    from pixal3d.data.synth import synthesize

    step = max(1, args.count // 10)

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % step == 0 or done == total):
            print(f"{done}/{total} assets", file=sys.stderr, flush=True)

    result = synthesize(args.count, args.output, seed=args.seed, workers=args.workers, sheet=args.sheet, progress=progress)
    sheet = f", sheet {result.sheet}" if result.sheet else ""
    print(f"{result.written} written, {result.skipped} kept; manifest {result.manifest}{sheet}")
    return 0


# --------------------------------------------------------------------------------------------------
# preview


def _register_preview(sub) -> None:
    p = sub.add_parser("preview", help="render a GLB to an RGBA PNG with the CPU preview rasteriser",
                       description="Render a GLB/glTF scene on a transparent background. 'front' is the official default "
                                   "input camera (fov 0.8575560450553894 rad, from +Z at d = 1/(2 tan(fov/2)) looking along -Z); "
                                   "'three_quarter' is an orthographic view from the front-right, above.")
    p.add_argument("mesh", help="input .glb / .gltf")
    p.add_argument("-o", "--output", required=True, help="output .png")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--view", choices=["front", "three_quarter"], default="front")
    p.add_argument("--supersample", type=int, default=2, help="anti-aliasing factor (default 2)")
    p.set_defaults(handler=_preview)


def _preview(args) -> int:
    import trimesh
    from PIL import Image

    from pixal3d.data.preview import render_scene
    from pixal3d.utils.files import atomic_output

    path = Path(args.mesh)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if not 16 <= args.size <= 4096 or not 1 <= args.supersample <= 4:
        raise UserError("--size must be in 16..4096 and --supersample in 1..4")
    try:
        scene = trimesh.load(path, force="scene")
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise UserError(f"cannot read {path}: {exc}") from exc
    if not scene.geometry:
        raise UserError(f"{path} has no meshes")
    image = render_scene(scene, args.size, view=args.view, supersample=args.supersample)
    with atomic_output(args.output) as tmp:
        Image.fromarray(image, "RGBA").save(tmp, format="PNG")
    print(f"wrote {args.output}")
    return 0
