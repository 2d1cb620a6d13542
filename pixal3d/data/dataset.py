"""Readers of a built dataset (``pixal3d data build``): one sample per (asset, view).

A sample holds the conditioning image with its true camera and the view-aligned O-Voxel of that view (voxel
frame: ``x`` right, ``y`` up, ``z`` toward the camera; see :mod:`pixal3d.data.build`). :func:`collate_views`
batches samples for the trainer: images are stacked, sparse arrays are concatenated with a batch-index column
in front of the coordinates (the official ``(b, x, y, z)`` int32 layout, rows of one item contiguous).

Splits are deterministic per asset id (all views of an asset fall in the same split): an asset is in ``val``
when the first 8 hex digits of ``sha256(asset_id)``, read as a fraction of 2³², are below ``val_fraction``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pixal3d.core.asset import VoxelAsset
from pixal3d.core.camera import Camera
from pixal3d.data.build import load_manifest
from pixal3d.errors import UserError

SPLITS = ("train", "val", "all")
#: what a :class:`ViewDataset` can read per item
FIELDS = ("image", "occupancy", "voxels")


def split_of(asset_id: str, val_fraction: float) -> str:
    """``"val"`` or ``"train"`` for ``asset_id`` (deterministic hash split, see the module docstring)."""
    h = int(hashlib.sha256(asset_id.encode()).hexdigest()[:8], 16) / 2**32
    return "val" if h < val_fraction else "train"


def occupancy_grid(coords: np.ndarray, resolution: int, grid: int) -> torch.Tensor:
    """Dense occupancy ``[1, grid, grid, grid]`` float32 (1 = occupied) of fine voxels ``coords [N,3]`` at
    ``resolution``; a coarse cell is occupied iff any fine voxel inside it is. Dims 1, 2, 3 = x, y, z."""
    if grid > resolution or resolution % grid:
        raise UserError(f"occupancy grid {grid} must divide the voxel resolution {resolution}")
    c = torch.from_numpy(np.asarray(coords, dtype=np.int64)) // (resolution // grid)
    out = torch.zeros(1, grid, grid, grid, dtype=torch.float32)
    out[0, c[:, 0], c[:, 1], c[:, 2]] = 1.0
    return out


class ViewDataset(Dataset):
    """The views of the ``"ok"`` assets of a built dataset folder, in (asset id, view) order.

    Args:
        root: the dataset folder (with ``manifest.json`` or shard manifests, merged on read).
        split: ``"train"``, ``"val"`` or ``"all"``.
        resolution: expected voxel resolution; :class:`UserError` if the dataset was built at another
            (None: accept the built one, :attr:`resolution`).
        val_fraction: share of assets (by id hash) in ``val``.
        image_size: resize the images to this side (LANCZOS; the camera is unchanged since it is defined by
            the FOV), or None to keep the built size.
        ss_resolution: side of the dense occupancy grid returned as ``occupancy`` (the sparse-structure VAE's
            input, 64 officially); it must divide the voxel resolution.
        fields: what to read (a subset of :data:`FIELDS`): ``"image"`` (image, alpha), ``"occupancy"`` and
            ``"voxels"`` (coords and the sparse attributes). A trainer reads only what it uses
            (:attr:`Trainer.dataset_fields`): without ``"voxels"`` the occupancy comes from the stored coarse
            occupancy of the ``.npz`` and the dense attribute arrays are never decompressed.
        augment: pass each image through :func:`pixal3d.data.augment.photo_augment` (matting edges, colour,
            blur, noise, JPEG), drawn from ``default_rng([torch.initial_seed(), index])`` — per DataLoader worker
            and epoch, so a seeded run repeats its draws.

    Each item is a dict (the keys of the fields read, plus ``asset_id``, ``view`` and ``camera`` always):

    * ``asset_id`` (str), ``view`` (int);
    * ``image`` ``[3, S, S]`` float32 in [0, 1], RGB composited on black (the official preprocessing's
      background); ``alpha`` ``[1, S, S]`` float32;
    * ``camera``: :class:`~pixal3d.core.camera.Camera` (true FOV, distance, ``mesh_scale`` 1);
    * ``coords`` ``[N, 3]`` int32 voxel indices at ``resolution``; ``dual_vertices`` ``[N, 3]`` float32 offsets in
      [0, 1] voxel units; ``intersected`` ``[N, 3]`` bool; ``split_weight`` ``[N]`` float32; ``attrs`` ``[N, 6]``
      float32 PBR (base RGB, metallic, roughness, alpha) in [0, 1];
    * ``occupancy`` ``[1, G, G, G]`` float32 with ``G = ss_resolution``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", resolution: int | None = None,
                 val_fraction: float = 0.05, image_size: int | None = None, ss_resolution: int = 64,
                 fields: tuple[str, ...] | list[str] = FIELDS, augment: bool = False):
        unknown = set(fields) - set(FIELDS)
        if unknown or not fields:
            raise UserError(f"dataset fields must be a non-empty subset of {', '.join(FIELDS)}, got {list(fields)}")
        self.fields = tuple(f for f in FIELDS if f in fields)
        if split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not 0.0 <= val_fraction <= 1.0:
            raise UserError(f"val_fraction must be in [0, 1], got {val_fraction}")
        self.root = Path(root)
        manifest = load_manifest(self.root)
        self.config = manifest["config"]
        self.resolution = int(self.config["resolution"])
        if resolution is not None and int(resolution) != self.resolution:
            raise UserError(f"{self.root} was built at voxel resolution {self.resolution}, not {resolution}")
        if ss_resolution > self.resolution or self.resolution % ss_resolution:
            raise UserError(f"ss_resolution {ss_resolution} must divide the voxel resolution {self.resolution}")
        self.image_size = image_size
        self.augment = bool(augment)
        self.ss_resolution = int(ss_resolution)
        self.items: list[tuple[str, dict[str, Any]]] = []
        for asset_id, entry in manifest["assets"].items():
            if entry.get("status") != "ok" or (split != "all" and split_of(asset_id, val_fraction) != split):
                continue
            self.items.extend((asset_id, view) for view in entry["views"])

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, path: Path, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            with Image.open(path) as im:
                im = im.convert("RGBA")
                if self.image_size is not None and im.size != (self.image_size, self.image_size):
                    im = im.resize((self.image_size, self.image_size), Image.LANCZOS)
                pixels = np.asarray(im)
        except OSError as exc:
            raise UserError(f"cannot read image {path}: {exc}") from exc
        if self.augment:
            from pixal3d.data.augment import photo_augment

            pixels = photo_augment(pixels, np.random.default_rng([torch.initial_seed(), index]))
        rgba = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)
        alpha = rgba[3:4]
        return rgba[:3] * alpha, alpha

    def _coarse_occupancy(self, path: Path) -> tuple[torch.Tensor, Camera | None]:
        """The occupancy grid from the smallest stored coarse occupancy that the grid divides (else the coords),
        reading only those arrays of the ``.npz``; and the stored camera."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(data["header"].tobytes().decode())
                stored = sorted(int(k.split("_", 1)[1]) for k in data.files if k.startswith("occupancy_"))
                usable = [g for g in stored if g >= self.ss_resolution and g % self.ss_resolution == 0]
                source, res = (f"occupancy_{usable[0]}", usable[0]) if usable else ("coords", self.resolution)
                coords = data[source]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise UserError(f"{path} is not a readable asset file ({exc})") from exc
        if header.get("resolution") != self.resolution:
            raise UserError(f"{path} is not an asset at resolution {self.resolution}")
        cam = header.get("camera")
        camera = Camera.front(cam["fov_x"], cam["distance"], cam["mesh_scale"]) if cam else None
        return occupancy_grid(coords, res, self.ss_resolution), camera

    def __getitem__(self, index: int) -> dict[str, Any]:
        asset_id, view = self.items[index]
        folder = self.root / asset_id
        item: dict[str, Any] = {"asset_id": asset_id, "view": int(view["index"])}
        if "image" in self.fields:
            item["image"], item["alpha"] = self._image(folder / view["image"], index)
        camera = None
        if "voxels" in self.fields:
            asset = VoxelAsset.load(folder / view["voxels"])
            if asset.resolution != self.resolution or asset.intersected is None:
                raise UserError(f"{folder / view['voxels']} is not a dual-grid asset at resolution {self.resolution}")
            camera = asset.camera
            item.update({
                "coords": torch.from_numpy(asset.coords.astype(np.int32)),
                "dual_vertices": torch.from_numpy(asset.dual_vertices.astype(np.float32)),
                "intersected": torch.from_numpy(asset.intersected.astype(bool)),
                "split_weight": torch.from_numpy(asset.split_weight.reshape(-1).astype(np.float32)),
                "attrs": torch.from_numpy(asset.attrs.astype(np.float32)),
            })
            if "occupancy" in self.fields:
                item["occupancy"] = occupancy_grid(asset.coords, self.resolution, self.ss_resolution)
        elif "occupancy" in self.fields:
            item["occupancy"], camera = self._coarse_occupancy(folder / view["voxels"])
        item["camera"] = camera or Camera.front(view["fov_x"], view["distance"])
        return item


_SPARSE_KEYS = ("dual_vertices", "intersected", "split_weight", "attrs")


def collate_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`ViewDataset` items.

    Returns ``image [B,3,S,S]``, ``alpha [B,1,S,S]``, ``occupancy [B,1,G,G,G]``, ``camera`` (list),
    ``fov_x`` / ``distance`` ``[B]`` float32, ``asset_id`` (list), ``view`` ``[B]`` int64, and the sparse
    arrays concatenated in item order: ``coords [ΣN, 4]`` int32 ``(b, x, y, z)``, ``dual_vertices [ΣN, 3]``,
    ``intersected [ΣN, 3]`` bool, ``split_weight [ΣN]``, ``attrs [ΣN, 6]``.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    coords = [torch.cat([torch.full((len(s["coords"]), 1), b, dtype=torch.int32), s["coords"].int()], 1)
              for b, s in enumerate(samples) if "coords" in s]
    batch: dict[str, Any] = {
        "asset_id": [s["asset_id"] for s in samples],
        "view": torch.tensor([s["view"] for s in samples], dtype=torch.int64),
        "camera": [s["camera"] for s in samples],
        "fov_x": torch.tensor([s["camera"].fov_x for s in samples], dtype=torch.float32),
        "distance": torch.tensor([s["camera"].distance for s in samples], dtype=torch.float32),
    }
    for key in ("image", "alpha", "occupancy"):
        if key in samples[0]:
            batch[key] = torch.stack([s[key] for s in samples])
    if "coords" in samples[0]:
        batch["coords"] = torch.cat(coords)
        for key in _SPARSE_KEYS:
            batch[key] = torch.cat([s[key] for s in samples])
    return batch


def data_roots(data_dir: str) -> list[Path]:
    """Dataset folders named by ``--data_dir``: a folder, or JSON text / a JSON file with a folder or a list."""
    path = Path(data_dir)
    if path.is_dir():
        return [path]
    if path.suffix == ".json":
        if not path.is_file():
            raise UserError(f"data dir {data_dir} not found")
        text = path.read_text()
    else:
        text = data_dir
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"data dir {data_dir} not found") from None
    roots = [value] if isinstance(value, str) else value
    if not isinstance(roots, list) or not roots or not all(isinstance(r, str) for r in roots):
        raise UserError("--data_dir JSON must be a folder path or a non-empty list of folder paths")
    missing = [r for r in roots if not Path(r).is_dir()]
    if missing:
        raise UserError(f"data dir {missing[0]} not found")
    return [Path(r) for r in roots]
