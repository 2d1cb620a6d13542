"""``pixal3d render GLB -o VIEW.png``: a software preview of a GLB (no GPU or OpenGL needed).

Cameras: ``input`` (the GLB's stored camera), ``turntable`` (a sheet of views around +Y), and the data tools'
views of the unit cube (:mod:`pixal3d.data.preview`): ``front`` (the official default input camera, from +Z) and
``three_quarter`` (orthographic, from the front-right, above) — these need no camera in the file, so any
GLB/glTF scene renders, e.g. a procedural asset of ``pixal3d data synth``.
"""

from __future__ import annotations

import argparse

from pixal3d.core.render import load_render_meshes, render, render_glb, save_png
from pixal3d.errors import UserError
from pixal3d.utils.files import check_output_path

#: the cameras of ``--camera``: the GLB's own ones, then the data tools' views of the unit cube
CAMERAS = ("input", "turntable", "front", "three_quarter")
#: ``--background`` → the renderer's background (``None``: straight alpha on a transparent background)
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "transparent": None}


def register(subparsers) -> None:
    """Add the ``render`` sub-command."""
    p = subparsers.add_parser("render", help="preview a GLB as a PNG (through its input camera, as a turntable, or from "
                                             "the front / three-quarter view of the unit cube)")
    p.add_argument("glb", help="GLB file (e.g. written by `pixal3d export`), or any GLB/glTF scene with the "
                               "front / three_quarter cameras")
    p.add_argument("-o", "--output", required=True, help="output .png path")
    p.add_argument("--camera", choices=CAMERAS, default="input",
                   help="input: the GLB's stored camera (the input framing); turntable: views around +Y; front: the "
                        "official default input camera of the unit cube (fov 0.8575560450553894 rad, from +Z at "
                        "d = 1/(2 tan(fov/2)) looking along -Z); three_quarter: orthographic, from the front-right, "
                        "above")
    p.add_argument("--size", type=int, default=512, help="edge of each view in pixels (default 512)")
    p.add_argument("--views", type=int, default=8, help="turntable views (default 8)")
    p.add_argument("--mode", choices=("shaded", "albedo", "mask"), default="shaded",
                   help="shaded (smooth normals, metallic/roughness preview lighting), albedo (unlit base colour) "
                        "or mask (silhouette)")
    p.add_argument("--background", choices=tuple(BACKGROUNDS), default="white",
                   help="white (default) or transparent (straight alpha, as the data tools' previews)")
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
    background = BACKGROUNDS[args.background]
    if args.camera in ("input", "turntable"):
        image = render_glb(args.glb, camera=args.camera, size=args.size, views=args.views, mode=args.mode,
                           supersample=args.supersample, background=background)
    else:
        from pixal3d.data.preview import front_camera, three_quarter_camera

        camera = {"front": front_camera, "three_quarter": three_quarter_camera}[args.camera]()
        image = render(load_render_meshes(args.glb), camera, args.size, args.mode, background, args.supersample)
    save_png(image, args.output)
    return 0
