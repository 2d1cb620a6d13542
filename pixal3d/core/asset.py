"""The decoded asset file (``.npz``): everything needed to export a GLB again without regenerating.

Written by ``pixal3d voxelize`` (mesh → O-Voxel) and by the pipeline (``--save_asset``), read by
``pixal3d export``. All geometry is in the voxel frame of the input view: ``x`` right, ``y`` up,
``z`` toward the input camera, object inside the unit cube ``[-0.5, 0.5]³``; voxel ``c`` of a grid
of size ``resolution`` spans ``[c/R - 0.5, (c+1)/R - 0.5]``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from pixal3d.core.camera import Camera
from pixal3d.errors import UserError
from pixal3d.utils.files import atomic_output

FORMAT = "pixal3d-asset"
VERSION = 1

#: names of the 6 PBR voxel channels, in order
PBR_CHANNELS = ("base_r", "base_g", "base_b", "metallic", "roughness", "alpha")


def header_array(header: dict) -> np.ndarray:
    """``header`` as the ``.npz``'s ``header`` entry: its JSON text as a uint8 array ``[bytes]``."""
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


def parse_header(array: np.ndarray) -> dict:
    """The header dict stored by :func:`header_array` (``ValueError`` if it is not JSON text)."""
    return json.loads(array.tobytes().decode())


def read_asset_header(path: str | Path) -> dict:
    """The JSON header of an asset file written by :meth:`VoxelAsset.save`, reading only that array of the ``.npz``;
    :class:`UserError` if the file is unreadable or has no header."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return parse_header(data["header"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable asset file ({exc})") from exc


@dataclass
class VoxelAsset:
    """Active voxels at ``resolution`` with flexible-dual-grid shape and PBR attributes.

    Attributes (N active voxels):
        coords: ``[N, 3]`` int32 voxel indices (x, y, z) in ``[0, resolution)``.
        attrs: ``[N, 6]`` float32 PBR values in [0, 1] (base colour RGB, metallic, roughness, alpha).
        dual_vertices: ``[N, 3]`` float32 dual-vertex offset inside the voxel, voxel units
            (official range (−0.5, 1.5)), or ``None`` when only a mesh is stored.
        intersected: ``[N, 3]`` bool per-axis edge-crossing flags, or ``None``.
        split_weight: ``[N]`` float32 quad split weights, or ``None``.
        mesh_vertices / mesh_faces: ``[V, 3]`` float32 / ``[F, 3]`` int32 decoded surface in the unit
            cube, or ``None`` (then the mesh is rebuilt from the dual-grid attributes).
        occupancy: resolution → ``[M, 3]`` int32 occupied voxels of coarser grids (e.g. 64, 32).
        camera: the input camera (:class:`~pixal3d.core.camera.Camera`: ``fov_x``, ``distance``, ``mesh_scale``),
            or ``None`` when unknown.
        source: free-form provenance (input file, model, seed, …).
    """

    resolution: int
    coords: np.ndarray
    attrs: np.ndarray
    dual_vertices: np.ndarray | None = None
    intersected: np.ndarray | None = None
    split_weight: np.ndarray | None = None
    mesh_vertices: np.ndarray | None = None
    mesh_faces: np.ndarray | None = None
    occupancy: dict[int, np.ndarray] = field(default_factory=dict)
    camera: Camera | None = None
    source: dict = field(default_factory=dict)

    _ARRAYS = ("coords", "attrs", "dual_vertices", "intersected", "split_weight", "mesh_vertices", "mesh_faces")

    def save(self, path: str | Path) -> None:
        """Write the asset atomically to ``path`` (``.npz``)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS if getattr(self, name) is not None}
        for res, occ in self.occupancy.items():
            arrays[f"occupancy_{int(res)}"] = np.asarray(occ, dtype=np.int32)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "resolution": int(self.resolution),
            "camera": self.camera.front_fields() if self.camera else None,
            "source": self.source,
            "pbr_channels": list(PBR_CHANNELS),
        }
        arrays["header"] = header_array(header)
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "VoxelAsset":
        """Read an asset written by :meth:`save`; :class:`UserError` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"asset file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UserError(f"{path} is not a readable asset file ({exc}); write it again with --save_asset or "
                            f"`pixal3d voxelize`") from exc
        try:
            header = parse_header(arrays.pop("header"))
        except (KeyError, ValueError) as exc:
            raise UserError(f"{path} is not a pixal3d asset file (no header)") from exc
        if header.get("format") != FORMAT:
            raise UserError(f"{path} is not a pixal3d asset file")
        if header.get("version", 0) > VERSION:
            raise UserError(f"{path} was written by a newer pixal3d (asset version {header['version']})")
        occupancy = {int(k.split("_", 1)[1]): arrays.pop(k) for k in list(arrays) if k.startswith("occupancy_")}
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in arrays.items() if k in known}
        camera = Camera.front(**header["camera"]) if header.get("camera") else None
        asset = cls(resolution=header["resolution"], occupancy=occupancy, camera=camera, source=header.get("source", {}), **kwargs)
        asset.validate(path)
        return asset

    def validate(self, where: str | Path = "asset") -> None:
        """Check shapes and ranges; :class:`UserError` naming the first problem."""
        n = len(self.coords)
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise UserError(f"{where}: coords must be [N, 3]")
        if self.attrs.shape != (n, len(PBR_CHANNELS)):
            raise UserError(f"{where}: attrs must be [{n}, {len(PBR_CHANNELS)}], got {list(self.attrs.shape)}")
        if n and (self.coords.min() < 0 or self.coords.max() >= self.resolution):
            raise UserError(f"{where}: voxel coords outside [0, {self.resolution})")
        for name, width in (("dual_vertices", 3), ("intersected", 3)):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n, width):
                raise UserError(f"{where}: {name} must be [{n}, {width}]")
        if self.split_weight is not None and self.split_weight.reshape(-1).shape != (n,):
            raise UserError(f"{where}: split_weight must have {n} values")
        if (self.mesh_vertices is None) != (self.mesh_faces is None):
            raise UserError(f"{where}: mesh_vertices and mesh_faces must be stored together")
        if self.mesh_vertices is None and self.intersected is None:
            raise UserError(f"{where}: holds neither a mesh nor dual-grid attributes")
        if self.mesh_faces is not None and len(self.mesh_faces) and (
            self.mesh_faces.min() < 0 or self.mesh_faces.max() >= len(self.mesh_vertices)
        ):
            raise UserError(f"{where}: mesh faces index missing vertices")
