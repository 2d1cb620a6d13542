"""``pixal3d data pack``: a built dataset → a compact copy for a machine that may receive only a few MiB.

A lent GPU machine (see docs/training.md, "Training on a lent GPU") receives the working tree and at most 64 MiB
in all, and reaches no package registry or dataset host, so the ~4 GB built dataset cannot travel. The stage a
short GPU budget buys most for is the sparse-structure flow, which reads only each view's image, its camera and
its coarse occupancy (:attr:`ViewDataset.fields` ``image`` + ``occupancy``). A pack keeps exactly that:

* ``PACK/manifest.json`` — the source manifest's format and build config (same ``config_hash``), its ``"ok"``
  assets with their first ``views`` views, plus a ``"pack"`` record (source, views, quality, occupancy grid and
  the bytes of the view files);
* ``PACK/<asset_id>/view_{k:02d}.webp`` — the render re-encoded as WebP (lossy RGB at ``quality``, lossless alpha);
* ``PACK/<asset_id>/view_{k:02d}.npz`` — the view's asset header (camera, ``file_to_view``, provenance) and
  ``occupancy_{G}``: the occupied cells of the ``G³`` grid as ``uint8`` coordinates ``[M, 3]`` (x, y, z), the
  same cells :func:`pixal3d.data.dataset.occupancy_grid` derives from the full voxels.

The pack is itself a dataset folder: :class:`~pixal3d.data.dataset.ViewDataset` reads it with ``fields =
("image", "occupancy")`` and ``ss_resolution = G``, multi-view items included. Trainers that need the voxels
(VAEs, SLat flows) still need the full dataset. The pack is written into a temporary folder and renamed into place
only when complete and within ``max_bytes``; nothing is left behind otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from pixal3d.core.asset import header_array
from pixal3d.data.build import MANIFEST, load_manifest
from pixal3d.data.dataset import read_coarse_coords
from pixal3d.errors import UserError
from pixal3d.utils.files import write_json


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_dataset` wrote: the folder, its assets and views, and its size in bytes (files only)."""

    path: Path
    assets: int
    views: int
    bytes: int


def coarse_cells(npz: Path, grid: int) -> np.ndarray:
    """Occupied cells ``[M, 3]`` uint8 (x, y, z) of the ``grid³`` grid of a built view's ``.npz``: each voxel of the
    finest stored occupancy that ``grid`` divides (:func:`~pixal3d.data.dataset.read_coarse_coords`) in its cell."""
    coords, res, _ = read_coarse_coords(npz, grid)
    return _cells(coords, res, grid, npz)


def _cells(coords: np.ndarray, res: int, grid: int, npz: Path) -> np.ndarray:
    if not 1 <= grid <= 256 or res % grid:
        raise UserError(f"occupancy grid {grid} must be in 1..256 and divide {npz}'s voxel resolution {res}")
    return np.unique(np.asarray(coords, dtype=np.int64) // (res // grid), axis=0).astype(np.uint8).reshape(-1, 3)


def _packed_view(folder: Path, view: dict[str, Any], out: Path, quality: int, grid: int) -> tuple[dict[str, Any], int]:
    """Write one view's WebP and reduced ``.npz`` into ``out``; returns its manifest entry and bytes written."""
    stem = Path(view["image"]).stem
    try:
        with Image.open(folder / view["image"]) as im:
            rgba = im.convert("RGBA")
    except OSError as exc:
        raise UserError(f"cannot read image {folder / view['image']}: {exc}") from exc
    buf = io.BytesIO()
    rgba.save(buf, format="WEBP", quality=quality, alpha_quality=100, method=4)
    (out / f"{stem}.webp").write_bytes(buf.getvalue())
    npz = folder / view["voxels"]
    coords, res, header = read_coarse_coords(npz, grid)
    target = out / f"{Path(view['voxels']).stem}.npz"
    np.savez_compressed(target, header=header_array(header),
                        **{f"occupancy_{grid}": _cells(coords, res, grid, npz)})
    entry = {**view, "image": f"{stem}.webp", "voxels": target.name}
    return entry, buf.tell() + target.stat().st_size


def pack_dataset(source: str | os.PathLike, out_dir: str | os.PathLike, views: int = 2, quality: int = 90,
                 grid: int = 16, max_bytes: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> PackResult:
    """Write the pack of the built dataset ``source`` to ``out_dir`` (module docstring).

    Args:
        source: a folder written by ``pixal3d data build`` (its manifest, shard manifests merged).
        out_dir: the pack folder; must not exist yet (a pack is written whole or not at all).
        views: views kept per asset (the lowest indices; the build draws views at random already).
        quality: WebP quality of the RGB channels, 1..100 (alpha is always lossless).
        grid: side ``G`` of the occupancy grid kept (the structure VAE's input side, 16 for pixal3d-small).
        max_bytes: fail, writing nothing, when the pack's files exceed this many bytes, or early when the first 50 or
            more assets project a total 10 % over it (None: no limit).
        progress: called as ``progress(done, total)`` after each asset.

    Raises :class:`UserError` (one line) on a bad argument, an unreadable source or a pack over ``max_bytes``.
    """
    if views < 1:
        raise UserError(f"--views must be at least 1, got {views}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be in 1..100, got {quality}")
    manifest = load_manifest(source)
    resolution = int(manifest["config"]["resolution"])
    if grid > resolution or resolution % grid:
        raise UserError(f"occupancy grid {grid} must divide the dataset's voxel resolution {resolution}")
    out = Path(out_dir)
    if out.exists():
        raise UserError(f"{out} already exists; a pack is written into a new folder")
    ok = {aid: e for aid, e in manifest["assets"].items() if e.get("status") == "ok"}
    if not ok:
        raise UserError(f"{source} holds no built asset to pack")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        assets: dict[str, dict[str, Any]] = {}
        total = count = 0
        for done, (asset_id, entry) in enumerate(ok.items(), 1):
            (tmp / asset_id).mkdir()
            kept = sorted(entry["views"], key=lambda v: int(v["index"]))[:views]
            packed = []
            for view in kept:
                record, size = _packed_view(Path(source) / asset_id, view, tmp / asset_id, quality, grid)
                packed.append(record)
                total += size
            count += len(packed)
            assets[asset_id] = {**entry, "views": packed}
            if max_bytes is not None and (total > max_bytes or (done >= 50 and total * len(ok) / done > 1.1 * max_bytes)):
                raise UserError(f"the pack would be ~{total * len(ok) / done / 2**20:.1f} MiB (measured on {done} of "
                                f"{len(ok)} assets), over {max_bytes / 2**20:.1f} MiB; keep fewer --views or lower "
                                "--quality")
            if progress is not None:
                progress(done, len(ok))
        record = {"source": str(Path(source).resolve()), "views": views, "quality": quality,
                  "occupancy_grid": grid, "view_bytes": total}
        write_json(tmp / MANIFEST, {**{k: v for k, v in manifest.items() if k != "assets"},
                                    "pack": record, "assets": assets})
        total += (tmp / MANIFEST).stat().st_size
        if max_bytes is not None and total > max_bytes:
            raise UserError(f"the pack is {total / 2**20:.1f} MiB, over {max_bytes / 2**20:.1f} MiB; "
                            "keep fewer --views or lower --quality")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackResult(out, len(assets), count, total)
