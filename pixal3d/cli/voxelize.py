"""``pixal3d voxelize MESH -o asset.npz --resolution R``: mesh → O-Voxel asset file."""

from __future__ import annotations

import math
import time

from pixal3d.core.camera import DEFAULT_FOV_X, Camera
from pixal3d.errors import UserError
from pixal3d.mesh.io import load_mesh
from pixal3d.mesh.voxelize import voxelize
from pixal3d.utils.files import check_output_path


def run(args) -> int:
    R = args.resolution
    if R < 8 or R > 2048 or R & (R - 1):
        raise UserError(f"--resolution must be a power of two in [8, 2048], got {R}")
    if not (0.0 < args.fov < math.pi):
        raise UserError(f"--fov must be in (0, pi) radians, got {args.fov}")
    check_output_path(args.output, (".npz",))
    t0 = time.perf_counter()
    mesh = load_mesh(args.mesh, up=args.up, yaw_degrees=args.yaw, fill=args.fill)
    load_s = time.perf_counter() - t0
    source = {"input": str(args.mesh), "up": args.up, "yaw_degrees": args.yaw, "fill": args.fill,
              "file_to_voxel": mesh.transform.tolist()}
    asset, times = voxelize(mesh, R, camera=Camera.front(args.fov), source=source)
    asset.save(args.output)
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in {"load": load_s, **times}.items())
    print(f"{args.output}: {len(asset.coords)} voxels at {R}³ ({stages})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "voxelize", help="convert a mesh (OBJ/PLY/GLB/glTF, PBR textures) into an O-Voxel asset (.npz)",
        description="Normalise a mesh into the unit cube of the voxel frame (x right, y up, z toward the "
                    "camera) and compute its flexible-dual-grid and PBR voxels at --resolution.")
    parser.add_argument("mesh", help="input mesh file")
    parser.add_argument("-o", "--output", required=True, help="output asset file (.npz)")
    parser.add_argument("--resolution", type=int, default=256, help="voxel grid size, a power of two (default 256)")
    parser.add_argument("--up", default="+y", choices=["+x", "-x", "+y", "-y", "+z", "-z"],
                        help="the file's up axis (glTF: +y, the default; many scans: +z)")
    parser.add_argument("--yaw", type=float, default=0.0, help="turn the model about the up axis, degrees")
    parser.add_argument("--fill", type=float, default=0.98, help="longest bounding-box side in the unit cube (default 0.98)")
    parser.add_argument("--fov", type=float, default=DEFAULT_FOV_X,
                        help=f"camera horizontal field of view, radians (default {DEFAULT_FOV_X}); distance from distance_from_fov")
    parser.set_defaults(handler=run)
