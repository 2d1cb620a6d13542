"""``pixal3d render GLB -o VIEW.png``: a software preview of a GLB (no GPU or OpenGL needed)."""

from __future__ import annotations

import argparse

from pixal3d.errors import UserError
from pixal3d.core.render import render_glb, save_png
from pixal3d.utils.files import check_output_path


def register(subparsers) -> None:
    """Add the ``render`` sub-command."""
    p = subparsers.add_parser("render", help="preview a GLB as a PNG (through its input camera or as a turntable)")
    p.add_argument("glb", help="GLB file (e.g. written by `pixal3d export`)")
    p.add_argument("-o", "--output", required=True, help="output .png path")
    p.add_argument("--camera", choices=("input", "turntable"), default="input",
                   help="input: the GLB's stored camera (the input framing); turntable: views around +Y")
    p.add_argument("--size", type=int, default=512, help="edge of each view in pixels (default 512)")
    p.add_argument("--views", type=int, default=8, help="turntable views (default 8)")
    p.add_argument("--mode", choices=("shaded", "albedo", "mask"), default="shaded",
                   help="shaded (smooth normals, metallic/roughness preview lighting), albedo (unlit base colour) "
                        "or mask (silhouette)")
    p.add_argument("--supersample", type=int, default=1, help="anti-aliasing factor, 1..4 (default 1)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``pixal3d render``."""
    check_output_path(args.output, (".png",))
    if not 16 <= args.size <= 4096:
        raise UserError(f"size must be between 16 and 4096, got {args.size}")
    if not 1 <= args.views <= 64:
        raise UserError(f"views must be between 1 and 64, got {args.views}")
    if not 1 <= args.supersample <= 4:
        raise UserError(f"supersample must be between 1 and 4, got {args.supersample}")
    save_png(render_glb(args.glb, camera=args.camera, size=args.size, views=args.views, mode=args.mode,
                        supersample=args.supersample), args.output)
    return 0
