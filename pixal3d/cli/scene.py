"""``pixal3d scene``: one picture of several objects → one GLB, a node per object, each pixel-aligned.

See :mod:`pixal3d.pipelines.scene` for the virtual cameras and the ground-plane placement rule.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from pixal3d import paths
from pixal3d.errors import UserError


def register(subparsers) -> None:
    """Add ``scene`` to the ``pixal3d`` parser."""
    from pixal3d.cli.export import add_export_arguments
    from pixal3d.cli.options import parse_fov

    p = subparsers.add_parser("scene", help="one picture of several objects → one GLB with a node per object",
                              description="Segment the objects (a label image, a folder of masks, or the connected "
                                          "components of the cut-out), generate each through its own virtual camera "
                                          "(the picture turned about the camera centre, so alignment is kept) and place "
                                          "them on one ground plane. Writes one GLB with a named node per object and "
                                          "the picture's camera.")
    p.add_argument("--image", required=True, help="the picture")
    p.add_argument("--output", required=True, help="output .glb")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--masks", help="label image: one integer (or colour) per object, 0/black = background")
    group.add_argument("--masks-dir", help="folder of mask images, one object each (named by file)")
    group.add_argument("--auto", action="store_true",
                       help="connected components of the alpha (or of the background removal) — the default")
    p.add_argument("--min-area", type=float, default=0.002, help="--auto: smallest object, fraction of the picture (0.002)")
    p.add_argument("--model", default=None, help=f"model folder (default: {paths.component_path('pixal3d-small')})")
    p.add_argument("--fov", type=parse_fov, default=None, help="the picture's horizontal FOV (default: the official default)")
    p.add_argument("--camera-height", type=float, default=1.0,
                   help="ground-plane rule: camera height above the ground plane (scene units, 1.0)")
    p.add_argument("--pitch", type=float, default=15.0, help="ground-plane rule: camera pitch below the horizon, degrees (15)")
    p.add_argument("--depth", default=None,
                   help="depth map placing the objects instead of the ground plane: .npy camera z at the picture's "
                        "size, or a 16-bit PNG in millimetres (default: MoGe-2's estimate when installed)")
    p.add_argument("--ground-plane", action="store_true",
                   help="place the objects by the ground-plane rule even when MoGe-2 is installed")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, default=None, help="sampling steps of every flow (default: the model's)")
    p.add_argument("--resolution", type=int, default=None, help="final voxel resolution (default: the model's)")
    p.add_argument("--device", default=None)
    p.add_argument("--silhouette", action=argparse.BooleanOptionalAction, default=None,
                   help="hold each object to its silhouette (its mask and the objects that may hide it); default: "
                        "the model's setting")
    p.add_argument("--separate", action="store_true", help="also write <output stem>_<object>.glb per object")
    add_export_arguments(p)
    p.set_defaults(handler=_scene)


def _scene(args) -> int:
    from pixal3d.cli.export import export_options
    from pixal3d.cli.generate import resolve_model
    from pixal3d.core.camera import DEFAULT_FOV_X
    from pixal3d.devices import select_device
    from pixal3d.image.io import load_image
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline
    from pixal3d.pipelines.scene import generate_scene, pipeline_object_generator, scene_depth, scene_masks
    from pixal3d.utils.files import atomic_output

    output = Path(args.output)
    if output.suffix.lower() != ".glb":
        raise UserError(f"output must be a .glb file, got {output}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be positive, got {args.steps}")
    if not args.camera_height > 0:
        raise UserError(f"--camera-height must be positive, got {args.camera_height}")
    export = export_options(args)
    if args.depth is not None and args.ground_plane:
        raise UserError("--depth and --ground-plane exclude each other")
    picture = load_image(args.image)
    image, masks, _ = scene_masks(picture, args.masks, args.masks_dir, args.min_area)
    model = resolve_model(args.model)
    depth, estimated_fov, placement = scene_depth(picture, args.depth, not args.ground_plane, select_device(args.device))
    fov = args.fov if args.fov is not None else estimated_fov if estimated_fov is not None else DEFAULT_FOV_X
    print(f"scene: placement by the {placement}; horizontal FOV {math.degrees(fov):.1f}°", file=sys.stderr)
    started = time.perf_counter()
    pipeline = Pixal3DPipeline.from_pretrained(model, device=args.device)
    overrides = {"steps": args.steps, "silhouette": args.silhouette}
    if args.resolution:
        overrides["pipeline_type"] = pipeline.pipeline_type_for(args.resolution)
    generator = pipeline_object_generator(pipeline, args.seed, export, overrides)
    result = generate_scene(image, masks, fov, generator, args.camera_height, args.pitch,
                            progress=lambda name: print(f"scene: generating {name}", file=sys.stderr, flush=True),
                            depth=depth)
    with atomic_output(output) as tmp:
        tmp.write_bytes(result.glb)
    if args.separate:
        for name, data in zip(result.names, result.object_glbs):
            with atomic_output(output.with_name(f"{output.stem}_{name}.glb")) as tmp:
                tmp.write_bytes(data)
    for name, reference in zip(result.names, result.depths):
        print(f"{name}: depth {reference:.3f}, silhouette IoU {result.iou[name]:.3f}", file=sys.stderr)
    print(f"union silhouette IoU {result.iou['union']:.3f}; {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"wrote {output} ({len(result.names)} objects)")
    return 0
