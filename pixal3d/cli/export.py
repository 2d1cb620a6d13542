"""``pixal3d export ASSET.npz -o OUT.glb``: a decoded asset to a textured PBR GLB."""

from __future__ import annotations

import argparse

from pixal3d.core.asset import VoxelAsset
from pixal3d.export.glb import ExportOptions, asset_to_glb
from pixal3d.mesh.cleanup import MIN_COMPONENT_AREA
from pixal3d.mesh.simplify import DEFAULT_FACE_BUDGET
from pixal3d.utils.files import check_output_path


def register(subparsers) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export",
        help="decoded asset (.npz) → textured PBR GLB",
        description="Mesh → hole filling → [remesh] → simplify → UV unwrap → texture bake → GLB (+Y up, "
        "input-view side facing +Z, input camera stored as a camera node).",
    )
    p.add_argument("asset", help="asset file written by the pipeline (--save_asset) or `pixal3d voxelize`")
    p.add_argument("-o", "--output", required=True, help="output .glb path (written atomically)")
    add_export_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing table")
    p.set_defaults(handler=run)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The GLB export options, shared by ``pixal3d export`` and ``pixal3d generate`` / ``inference.py``."""
    parser.add_argument("--texture_size", type=int, default=None,
                        help="texture edge in texels, a power of two (default: 4 texels per voxel edge of the final grid, "
                             "256–2048: 512 for the default model's 128³, 2048 from 512³ on)")
    parser.add_argument("--decimation_target", type=int, default=None,
                        help="face budget after simplification (default: the official 1,000,000 at 1024³ scaled by "
                             f"(R/1024)², 10,000–{DEFAULT_FACE_BUDGET:,}: 15,625 at 128³, {DEFAULT_FACE_BUDGET:,} from 448³ on)")
    parser.add_argument("--remesh", action="store_true", help="rebuild the surface as a narrow-band offset shell first")
    parser.add_argument("--official_orientation", action="store_true",
                        help="write the official Pixal3D orientation (x,y,z)→(−x,y,−z) instead of input view facing +Z")
    parser.add_argument("--min_component_area", type=float, default=MIN_COMPONENT_AREA,
                        help=f"drop surface parts smaller than this (unit-cube area; default {MIN_COMPONENT_AREA:g}, 0 keeps all)")


def export_options(args: argparse.Namespace) -> ExportOptions:
    """:class:`ExportOptions` from the parsed :func:`add_export_arguments` options (validated)."""
    options = ExportOptions(texture_size=args.texture_size, decimation_target=args.decimation_target,
                            remesh=args.remesh, official_orientation=args.official_orientation,
                            min_component_area=args.min_component_area)
    options.validate()
    return options


def run(args: argparse.Namespace) -> int:
    """Handler of ``pixal3d export``."""
    options = export_options(args)
    check_output_path(args.output, (".glb",))
    asset = VoxelAsset.load(args.asset)
    result = asset_to_glb(asset, args.output, options, progress=not args.quiet)
    if not args.quiet:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        print(f"wrote {result.path}: {result.faces:,} faces, {result.vertices:,} vertices, "
              f"alpha {result.alpha_mode} ({stages})")
    return 0
