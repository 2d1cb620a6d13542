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

from pixal3d.core.asset import VoxelAsset, parse_header, read_asset_header
from pixal3d.core.camera import GRID_TO_WORLD_ROTATION, Camera
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


def read_coarse_coords(path: str | os.PathLike, grid: int) -> tuple[np.ndarray, int, dict[str, Any]]:
    """``(coords [M, 3], res, header)`` of a built view's ``.npz``: the occupied voxels of the smallest stored coarse
    occupancy ``occupancy_{res}`` that ``grid`` divides, else the full voxel ``coords`` at the header's resolution,
    reading only those arrays; and the parsed asset header. :class:`UserError` when the file is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = parse_header(data["header"])
            stored = sorted(int(k.split("_", 1)[1]) for k in data.files if k.startswith("occupancy_"))
            usable = [g for g in stored if g >= grid and g % grid == 0]
            source, res = (f"occupancy_{usable[0]}", usable[0]) if usable else ("coords", int(header["resolution"]))
            return data[source], res, header
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable asset file ({exc})") from exc


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
        num_views: conditioning views per item, an int or an inclusive range ``[lo, hi]`` drawn uniformly per item
            (multi-view training: the flows learn from the mean of several views' back-projections, as generation
            with several images computes it). Besides its own view, an item then carries ``k - 1`` other views of the
            same asset (distinct, drawn from ``default_rng([torch.initial_seed(), index, 1])``) as ``extra_images``
            with their cameras in this view's frame (``extra_cameras``, see :func:`relative_camera`); the targets stay
            this view's. 1 (the default): single view, nothing extra.

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
                 fields: tuple[str, ...] | list[str] = FIELDS, augment: bool = False,
                 num_views: int | list[int] | tuple[int, int] = 1):
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
        lo, hi = (num_views, num_views) if isinstance(num_views, int) else tuple(num_views)
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise UserError(f"num_views must be a positive int or a range [lo, hi] with 1 <= lo <= hi, got {num_views}")
        self.num_views = (lo, hi)
        self.ss_resolution = int(ss_resolution)
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.asset_views: dict[str, list[dict[str, Any]]] = {}
        for asset_id, entry in manifest["assets"].items():
            if entry.get("status") != "ok" or (split != "all" and split_of(asset_id, val_fraction) != split):
                continue
            self.items.extend((asset_id, view) for view in entry["views"])
            self.asset_views[asset_id] = list(entry["views"])

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, path: Path, draw: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rgb on black [3,S,S], alpha [1,S,S])``; augmented with the draws of ``default_rng([seed, *draw])``."""
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

            pixels = photo_augment(pixels, np.random.default_rng([torch.initial_seed(), *draw]))
        rgba = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)
        alpha = rgba[3:4]
        return rgba[:3] * alpha, alpha

    def _coarse_occupancy(self, path: Path) -> tuple[torch.Tensor, Camera | None]:
        """The occupancy grid from :func:`read_coarse_coords` and the stored camera."""
        coords, res, header = read_coarse_coords(path, self.ss_resolution)
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
            item["image"], item["alpha"] = self._image(folder / view["image"], (index,))
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
        if "image" in self.fields and self.num_views[1] > 1:
            self._add_extra_views(item, folder, view, index)
        return item

    def _add_extra_views(self, item: dict[str, Any], folder: Path, view: dict[str, Any], index: int) -> None:
        rng = np.random.default_rng([torch.initial_seed(), index, 1])
        others = [v for v in self.asset_views[item["asset_id"]] if v["index"] != view["index"]]
        k = min(int(rng.integers(self.num_views[0], self.num_views[1] + 1)), len(others) + 1)
        chosen = [others[i] for i in sorted(rng.choice(len(others), size=k - 1, replace=False))] if k > 1 else []
        images = [self._image(folder / v["image"], (index, 2, int(v["index"])))[0] for v in chosen]
        item["extra_images"] = torch.stack(images) if images else torch.zeros(0, *item["image"].shape)
        own = _file_to_view(folder / view["voxels"]) if chosen else None
        item["extra_cameras"] = [relative_camera(own, _file_to_view(folder / v["voxels"]), v["fov_x"], v["distance"])
                                 for v in chosen]


def _file_to_view(path: Path) -> np.ndarray:
    """The ``[4,4]`` file → view-frame similarity stored in a built view's ``.npz`` header."""
    try:
        return np.asarray(read_asset_header(path)["source"]["view"]["file_to_view"], dtype=np.float64)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path} records no file_to_view transform ({exc}); rebuild the dataset") from exc


def relative_camera(own_file_to_view: np.ndarray, other_file_to_view: np.ndarray, fov_x: float,
                    distance: float) -> Camera:
    """The camera of another view of the same asset, in this view's conditioning frame.

    Each built view rotates and rescales the asset into its own view frame (a similarity ``T``, file → view) and sees
    it from ``(0, 0, distance)`` of that frame. The other camera's centre and axes are carried through
    ``T_own · T_other⁻¹`` (scale removed from the axes: perspective is unchanged when scene and camera scale
    together), then into the official Blender world of the back-projection; its lens is its ``fov_x``.
    """
    m = own_file_to_view @ np.linalg.inv(other_file_to_view)
    scale = np.cbrt(np.linalg.det(m[:3, :3]))
    pose = np.eye(4)
    pose[:3, :3] = m[:3, :3] / scale
    pose[:3, 3] = (m @ np.array([0.0, 0.0, float(distance), 1.0]))[:3]
    to_blender = np.eye(4)
    to_blender[:3, :3] = GRID_TO_WORLD_ROTATION  # view (voxel) frame → official Blender world
    return Camera(to_blender @ pose, float(fov_x))


_SPARSE_KEYS = ("dual_vertices", "intersected", "split_weight", "attrs")


def collate_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`ViewDataset` items.

    Returns ``image [B,3,S,S]``, ``alpha [B,1,S,S]``, ``occupancy [B,1,G,G,G]``, ``camera`` (list),
    ``fov_x`` / ``distance`` ``[B]`` float32, ``asset_id`` (list), ``view`` ``[B]`` int64, and the sparse
    arrays concatenated in item order: ``coords [ΣN, 4]`` int32 ``(b, x, y, z)``, ``dual_vertices [ΣN, 3]``,
    ``intersected [ΣN, 3]`` bool, ``split_weight [ΣN]``, ``attrs [ΣN, 6]``. Multi-view items add
    ``extra_images [ΣE,3,S,S]``, ``extra_cameras`` (list of ΣE) and ``extra_item [ΣE]`` int64 (the item each
    extra view belongs to).
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
    if "extra_images" in samples[0]:
        batch["extra_images"] = torch.cat([s["extra_images"] for s in samples])
        batch["extra_cameras"] = [c for s in samples for c in s["extra_cameras"]]
        batch["extra_item"] = torch.cat([torch.full((len(s["extra_cameras"]),), b, dtype=torch.int64)
                                         for b, s in enumerate(samples)])
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
