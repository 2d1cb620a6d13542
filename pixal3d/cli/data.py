"""``pixal3d data``: training-data tools, one sub-command each (``synth``, ``build``, ``pack``, ``evalset-signatures``,
``import-sh3f``). A GLB renders with ``pixal3d render`` (``--camera front|three_quarter`` for the data tools'
views, ``--background transparent``).

Add a sub-command by writing ``_register_<name>(sub)`` that sets ``handler=`` and calling it in
:func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from pixal3d.errors import UserError


@contextmanager
def _progress_bar(desc: str, unit: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar (on stderr, off when ``quiet``) driven by ``progress(done, total)`` calls; closed on exit."""
    from tqdm import tqdm

    bar = tqdm(unit=unit, desc=desc, disable=quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()


def register(subparsers) -> None:
    """Add ``data`` and its sub-commands to the ``pixal3d`` parser."""
    from pixal3d.cli import add_command_group

    sub = add_command_group(subparsers, "data", "make training data (procedural assets, datasets)", "Training-data tools.")
    _register_synth(sub)
    _register_build(sub)
    _register_pack(sub)
    _register_evalset_signatures(sub)
    _register_import_sh3f(sub)


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
# build


def _register_build(sub) -> None:
    p = sub.add_parser("build", help="render conditioning views and view-aligned O-Voxels of a folder of meshes",
                       description="For every mesh under --assets (OBJ/PLY/GLB/glTF/STL/OFF, recursive) write K random "
                                   "views as DATA/<id>/view_kk.png (RGBA) and view_kk.npz (O-Voxel in that view's voxel "
                                   "frame, with the camera), and a manifest. Azimuth U(0,360) deg, elevation U(-20,50) deg, "
                                   "FOV U(0.2,1.0) rad, distance distance_from_fov(fov)*U(1,1.2) (pushed back until the "
                                   "object fits). Complete views are kept, so a run resumes; a broken asset is recorded "
                                   "as an error in the manifest. With --shard i/n the manifest is "
                                   "manifest.shard-i-of-n.json; --merge combines them into manifest.json.")
    p.add_argument("--assets", help="folder of meshes (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="dataset folder")
    p.add_argument("--views", type=int, default=4, help="views per asset (default 4)")
    p.add_argument("--resolution", type=int, default=256, help="voxel resolution, a power of two (default 256)")
    p.add_argument("--image-size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--shard", default="0/1", help="build only shard i of n of the sorted asset list (default 0/1)")
    p.add_argument("--seed", type=int, default=0, help="view sampling seed (default 0)")
    p.add_argument("--up", default="+y", choices=["+x", "-x", "+y", "-y", "+z", "-z"],
                   help="the files' up axis (glTF: +y, the default)")
    p.add_argument("--environments", metavar="DIR",
                   help="folder of equirectangular HDR maps (.exr/.hdr) that light a share of the views instead of the "
                        "camera-fixed lights (Debian: `apt-get install blender-data` gives 8 CC0 maps in "
                        "/usr/share/blender/datafiles/studiolights/world)")
    p.add_argument("--environment-fraction", type=float, default=0.5,
                   help="share of the views lit by a random map, turned at random, exposure log-U(0.8, 2.0) "
                        "(default 0.5)")
    p.add_argument("--merge", action="store_true", help="only merge the shard manifests of -o into manifest.json")
    p.add_argument("--allow-eval-overlap", action="store_true",
                   help="also build evaluation meshes (refused by default: they are for `pixal3d evaluate` only; "
                        "never train a shipped model on them)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_build)


def _build(args) -> int:
    from pixal3d.data.build import BuildConfig, build_dataset, merge_manifests, parse_shard

    if args.merge:
        path, count = merge_manifests(args.output)
        print(f"merged {count} assets into {path}")
        return 0
    if not args.assets:
        raise UserError("--assets is required (unless --merge)")
    config = BuildConfig(views=args.views, resolution=args.resolution, image_size=args.image_size, seed=args.seed,
                         up=args.up, environments=args.environments, environment_fraction=args.environment_fraction)
    result = build_dataset(args.assets, args.output, config, workers=args.workers, shard=parse_shard(args.shard),
                           progress=not args.quiet, allow_eval_overlap=args.allow_eval_overlap)
    print(f"{result.built} assets built, {result.kept} kept, {result.failed} failed; manifest {result.manifest}")
    if result.failed and not (result.built or result.kept):  # documented: exit 1, the manifest lists every error
        print(f"error: all {result.failed} asset(s) failed (first: {result.first_error}); see {result.manifest}",
              file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# pack


def _register_pack(sub) -> None:
    p = sub.add_parser("pack", help="a built dataset → a compact copy for a lent GPU machine (images + occupancy)",
                       description="Copy the first --views views of every built asset with WebP images and only the "
                                   "coarse occupancy the sparse-structure flow trains on, into a new folder that "
                                   "`train.py --data_dir` reads like the dataset. Fails, writing nothing, over "
                                   "--max-mib.")
    p.add_argument("dataset", help="a folder written by `pixal3d data build`")
    p.add_argument("-o", "--output", required=True, help="the pack folder (must not exist)")
    p.add_argument("--views", type=int, default=2, help="views per asset (default 2)")
    p.add_argument("--quality", type=int, default=90, help="WebP quality of the colours, 1..100 (default 90)")
    p.add_argument("--grid", type=int, default=16, help="occupancy grid side kept (default 16: pixal3d-small's)")
    p.add_argument("--max-mib", type=float, default=12.0,
                   help="size limit in MiB (default 12: with the ~48 MiB checkout it stays under a lent GPU "
                        "machine's 64 MiB)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_pack)


def _pack(args) -> int:
    from pixal3d.data.pack import pack_dataset

    if args.max_mib <= 0:
        raise UserError(f"--max-mib must be positive, got {args.max_mib}")
    with _progress_bar("data pack", "asset", args.quiet) as progress:
        result = pack_dataset(args.dataset, args.output, views=args.views, quality=args.quality, grid=args.grid,
                              max_bytes=int(args.max_mib * 2**20), progress=progress)
    print(f"{result.assets} assets, {result.views} views, {result.bytes / 2**20:.1f} MiB → {result.path}")
    return 0


# --------------------------------------------------------------------------------------------------
# evalset-signatures


def _register_evalset_signatures(sub) -> None:
    p = sub.add_parser("evalset-signatures", help="fingerprint the evaluation meshes for the data tools' overlap guard",
                       description="Write the SHA-256 and shape signature of every mesh under --meshes to the file the "
                                   "overlap guard of `pixal3d data build` reads (default: the one committed in the package).")
    p.add_argument("--meshes", required=True, help="the evaluation mesh folder (e.g. ../shared/evalsets/meshes)")
    p.add_argument("-o", "--output", default=None, help="output JSON (default: pixal3d/data/evalset_signatures.json)")
    p.set_defaults(handler=_evalset_signatures)


def _evalset_signatures(args) -> int:
    from pixal3d.data.overlap import SIGNATURE_FILE, write_signatures

    out = args.output or SIGNATURE_FILE
    count = write_signatures(args.meshes, out)
    print(f"{count} evaluation meshes fingerprinted into {out}")
    return 0


# --------------------------------------------------------------------------------------------------
# import-sh3f


def _register_import_sh3f(sub) -> None:
    p = sub.add_parser("import-sh3f", help="Sweet Home 3D furniture catalogues (.sh3f) → GLB assets + credits",
                       description="Convert every object (doors and windows left out) of the given .sh3f catalogues, or "
                                   "of every .sh3f in the given folders, to OUT/<catalogue>/<object>.glb (+y up), with "
                                   "OUT/sources.json (name, category, creator, licence, size) and OUT/CREDITS.md. Only "
                                   "CC0 / CC-BY-3.0 catalogues are accepted. Existing GLBs are kept.")
    p.add_argument("catalogs", nargs="+", help=".sh3f files or folders (Debian: /usr/share/sweethome3d/furniture)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_import_sh3f)


def _import_sh3f(args) -> int:
    from pixal3d.data.furniture import import_catalogs

    with _progress_bar("import-sh3f", "model", args.quiet) as progress:
        counts = import_catalogs(args.catalogs, args.output, progress=progress)
    print(", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) + f"; sources {args.output}/sources.json")
    return 0
