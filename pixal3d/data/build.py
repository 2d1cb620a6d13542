"""``pixal3d data build``: meshes → view-aligned training samples (conditioning image + O-Voxel per view).

For every mesh under the asset folder (OBJ / PLY / GLB / glTF / STL / OFF, recursive) and each of ``K``
views, this writes

* ``DATA/<asset_id>/view_{k:02d}.png`` — RGBA ``S×S`` render (straight alpha, transparent background) seen
  from a random camera, with the CPU preview rasteriser (:mod:`pixal3d.data.preview`, 2× supersampled);
* ``DATA/<asset_id>/view_{k:02d}.npz`` — the mesh rotated into that view's voxel frame and voxelised at
  ``R`` (:func:`pixal3d.mesh.voxelize.voxelize`: coords, dual-grid attributes, PBR attributes, occupancy
  grids 64³/32³) with the true camera (:class:`~pixal3d.core.camera.Camera`, ``mesh_scale`` 1).

Camera convention (Pixal3D training: "random object-centric rotation, rendered from the front with varying FOV
and distance"). The mesh is loaded into its canonical frame (``+y`` up, front toward ``+z``, see
:func:`pixal3d.mesh.io.load_mesh`). View ``k`` draws, from ``numpy.random.default_rng([seed, h(asset_id)])``:

* azimuth ``U(0°, 360°)`` about ``+y`` (0° = the front, ``+z``) and elevation ``U(-20°, 50°)``
  (:data:`ELEVATION_RANGE_DEG`) — the camera direction ``(cos e·sin a, sin e, cos e·cos a)``;
* horizontal FOV ``U(0.2, 1.0)`` rad (:data:`FOV_RANGE`);
* distance ``distance_from_fov(fov) · U(1.0, 1.2)`` (:data:`DISTANCE_FACTOR`), pushed back if needed to the
  nearest distance at which every vertex projects inside the image (wide FOVs would otherwise crop the
  object's near side).

The mesh is rotated so that this direction becomes ``+z`` with no roll (voxel frame: ``x`` right, ``y`` up,
``z`` toward the camera), then re-normalised into the unit cube (bounding box centred, longest side
:data:`FILL`). The camera is therefore exactly the official front camera (world ``(0, -d, 0)``, i.e. voxel
``(0, 0, d)``) looking at the cube centre, which is what the projection conditioning assumes.

Resuming: a view is kept when both files exist and the ``.npz`` header records the same config hash and the
same source-file SHA-256. Sharding: ``--shard i/n`` takes assets ``i, i+n, …`` of the sorted list and writes
``manifest.shard-i-of-n.json``; :func:`merge_manifests` (``pixal3d data build --merge``) writes the union as
``manifest.json`` (readers also merge on read, see :func:`load_manifest`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixal3d.data.jobs import ignore_interrupts, resolve_workers, writable_folder
from pixal3d.data.overlap import EvalOverlapGuard, default_evalset_dir, file_sha256
from pixal3d.errors import UserError
from pixal3d.utils.failpoints import failpoint
from pixal3d.utils.files import atomic_output, remove_stale_temporaries, write_json

if TYPE_CHECKING:
    from pixal3d.core.camera import Camera

#: bump when the same config would produce different files
BUILDER_VERSION = 1
FORMAT = "pixal3d-dataset"
MANIFEST = "manifest.json"
#: horizontal field of view range, radians (uniform)
FOV_RANGE = (0.2, 1.0)
#: camera elevation range, degrees (uniform); azimuth is uniform over the full circle
ELEVATION_RANGE_DEG = (-20.0, 50.0)
#: distance = distance_from_fov(fov) · U(lo, hi), then pushed back until the object fits the frame
DISTANCE_FACTOR = (1.0, 1.2)
#: longest bounding-box side of the view-aligned mesh inside the unit cube
FILL = 0.98
#: supersampling factor of the conditioning renders
SUPERSAMPLE = 2
#: exposure of environment-lit views, log-uniform
EXPOSURE_RANGE = (0.8, 2.0)
_SHARD_RE = re.compile(r"^(\d+)/(\d+)$")
_SHARD_FILE_RE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class BuildConfig:
    """What determines the files of a dataset (its hash is stored in every view)."""

    views: int = 4
    resolution: int = 256
    image_size: int = 512
    seed: int = 0
    up: str = "+y"
    #: folder of equirectangular HDR maps lighting a share of the views (``None``: camera-fixed lights only)
    environments: str | None = None
    #: share of the views lit by a random environment map when ``environments`` is set
    environment_fraction: float = 0.5

    def validate(self) -> None:
        """:class:`UserError` for values out of range."""
        if not 0.0 <= self.environment_fraction <= 1.0:
            raise UserError(f"--environment-fraction must be in [0, 1], got {self.environment_fraction}")
        if self.environments is not None:
            from pixal3d.core.environment import find_environments

            find_environments(self.environments)
        if not 1 <= self.views <= 64:
            raise UserError(f"--views must be in 1..64, got {self.views}")
        R = self.resolution
        if R < 16 or R > 2048 or R & (R - 1):
            raise UserError(f"--resolution must be a power of two in [16, 2048], got {R}")
        if not 16 <= self.image_size <= 4096:
            raise UserError(f"--image-size must be in 16..4096, got {self.image_size}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if self.up not in ("+x", "-x", "+y", "-y", "+z", "-z"):
            raise UserError(f"--up must be one of +x -x +y -y +z -z, got {self.up!r}")

    def as_dict(self) -> dict[str, Any]:
        """The config plus the fixed sampling ranges, as stored in the manifest."""
        return {**dataclasses.asdict(self), "builder_version": BUILDER_VERSION, "fov_range": list(FOV_RANGE),
                "elevation_range_deg": list(ELEVATION_RANGE_DEG), "distance_factor": list(DISTANCE_FACTOR),
                "fill": FILL, "supersample": SUPERSAMPLE, "exposure_range": list(EXPOSURE_RANGE)}

    def hash(self) -> str:
        """Short SHA-256 of :meth:`as_dict` (stable key order)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ViewParams:
    """One sampled view: camera direction (degrees), horizontal FOV (rad), distance factor."""

    azimuth_deg: float
    elevation_deg: float
    fov_x: float
    distance_factor: float


@dataclass
class BuildResult:
    """What :func:`build_dataset` did."""

    built: int
    kept: int
    failed: int
    manifest: Path
    first_error: str | None = None  # "<asset id>: <error>" of the first failed asset, in id order


# --------------------------------------------------------------------------------------------------
# assets and ids


def find_assets(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Path]:
    """Mesh files under ``root`` (recursive, hidden entries skipped), sorted by relative POSIX path."""
    from pixal3d.mesh.io import MESH_SUFFIXES

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"asset folder not found: {root}")
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in MESH_SUFFIXES:
            continue
        if skip is not None and (path.resolve() == skip or skip in path.resolve().parents):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def asset_ids(root: str | os.PathLike, paths: list[Path]) -> list[str]:
    """Folder-safe ids: the relative path without suffix, ``/`` → ``__``; files that would share an id
    (``a.obj`` and ``a.glb``) get their suffix appended (``a_obj``, ``a_glb``)."""
    root = Path(root)
    stems = [re.sub(r"[^A-Za-z0-9._-]", "_", p.relative_to(root).with_suffix("").as_posix().replace("/", "__"))
             for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else f"{s}_{p.suffix.lower().lstrip('.')}" for s, p in zip(stems, paths)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 ≤ i < n``; :class:`UserError` otherwise."""
    m = _SHARD_RE.match(text.strip())
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_manifest_name(shard: tuple[int, int]) -> str:
    """``manifest.json`` for ``0/1``, else ``manifest.shard-i-of-n.json``."""
    i, n = shard
    return MANIFEST if n == 1 else f"manifest.shard-{i}-of-{n}.json"


def _id_hash(asset_id: str) -> int:
    return int(hashlib.sha256(asset_id.encode()).hexdigest()[:8], 16)


def sample_views(asset_id: str, config: BuildConfig) -> list[ViewParams]:
    """The ``config.views`` views of an asset, from ``default_rng([seed, sha256(asset_id)[:8]])`` alone
    (independent of sharding, worker count and the other assets)."""
    return draw_views(np.random.default_rng([config.seed, _id_hash(asset_id)]), config.views)


def draw_views(rng: np.random.Generator, count: int) -> list[ViewParams]:
    """``count`` views from the training camera distribution (module docstring), drawn in order from
    ``rng`` (four uniforms per view: azimuth, elevation, FOV, distance factor)."""
    out = []
    for _ in range(count):
        out.append(ViewParams(
            azimuth_deg=float(rng.uniform(0.0, 360.0)),
            elevation_deg=float(rng.uniform(*ELEVATION_RANGE_DEG)),
            fov_x=float(rng.uniform(*FOV_RANGE)),
            distance_factor=float(rng.uniform(*DISTANCE_FACTOR)),
        ))
    return out


@dataclass(frozen=True)
class ViewLighting:
    """How one view is lit: ``environment`` (map file name, or ``None`` for the camera-fixed preview lights),
    ``yaw_deg`` of the map about the view's up axis and ``exposure``."""

    environment: str | None
    yaw_deg: float = 0.0
    exposure: float = 1.0


def sample_lighting(asset_id: str, config: BuildConfig) -> list[ViewLighting]:
    """The lighting of each of the ``config.views`` views, from ``default_rng([seed, sha256(asset_id)[:8], 1])``
    (a stream of its own, so the cameras do not depend on it): with probability ``environment_fraction`` a
    uniformly chosen map of ``config.environments``, turned by ``U(0°, 360°)``, exposure log-uniform in
    :data:`EXPOSURE_RANGE`; otherwise the camera-fixed lights. Four draws per view either way."""
    names = _environment_names(config.environments) if config.environments is not None else []
    rng = np.random.default_rng([config.seed, _id_hash(asset_id), 1])
    out = []
    for _ in range(config.views):
        use, pick, yaw = rng.random(), rng.random(), rng.uniform(0.0, 360.0)
        exposure = math.exp(rng.uniform(*np.log(EXPOSURE_RANGE)))
        if names and use < config.environment_fraction:
            out.append(ViewLighting(names[min(int(pick * len(names)), len(names) - 1)], float(yaw), float(exposure)))
        else:
            out.append(ViewLighting(None))
    return out


@functools.lru_cache(maxsize=8)
def _environment_names(folder: str) -> list[str]:
    from pixal3d.core.environment import find_environments

    return [p.name for p in find_environments(folder)]


@functools.lru_cache(maxsize=64)
def _environment(folder: str, name: str):
    from pixal3d.core.environment import load_environment

    return load_environment(Path(folder) / name)


def view_environment(lighting: ViewLighting, config: BuildConfig, file_to_view: np.ndarray):
    """The :class:`~pixal3d.core.environment.Environment` of a view in the file's coordinates (the map upright in
    the view frame, turned by ``yaw_deg``), or ``None`` for the camera-fixed lights."""
    if lighting.environment is None:
        return None
    from pixal3d.core.environment import yaw_rotation

    linear = file_to_view[:3, :3]
    file_to_upright = linear / np.cbrt(np.linalg.det(linear))  # the similarity's rotation
    rotation = yaw_rotation(math.radians(lighting.yaw_deg)) @ file_to_upright
    return _environment(config.environments, lighting.environment).posed(rotation, lighting.exposure)


# --------------------------------------------------------------------------------------------------
# geometry


def view_rotation(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """``[3,3]`` rotation (rows: new x, y, z in canonical coordinates) taking the camera direction
    ``(cos e·sin a, sin e, cos e·cos a)`` to ``+z`` with the canonical ``+y`` kept upright (no roll)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    if abs(e) >= math.pi / 2:
        raise UserError(f"elevation must be inside (-90°, 90°), got {elevation_deg}")
    z = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def fit_distance(vertices: np.ndarray, fov_x: float) -> float:
    """Smallest camera distance along ``+z`` at which every vertex ``[V,3]`` (voxel frame) projects inside
    the square image of horizontal FOV ``fov_x``: ``max_v (z_v + max(|x_v|, |y_v|) / tan(fov/2))``."""
    t = math.tan(fov_x / 2.0)
    return float((vertices[:, 2] + np.abs(vertices[:, :2]).max(1) / t).max())


def view_distance(vertices: np.ndarray, params: ViewParams) -> float:
    """The camera distance of a view: ``distance_from_fov(fov) · distance_factor``, pushed back to
    :func:`fit_distance` of the view-frame ``vertices [V,3]`` when that is farther."""
    from pixal3d.core.camera import distance_from_fov

    return max(distance_from_fov(params.fov_x) * params.distance_factor, fit_distance(vertices, params.fov_x))


def view_mesh(mesh, rotation: np.ndarray):
    """A copy of a canonical :class:`~pixal3d.mesh.io.LoadedMesh` rotated by ``rotation`` and
    re-normalised into the unit cube (its ``transform`` maps file coordinates to the view frame)."""
    from pixal3d.mesh.io import normalize

    step = np.eye(4)
    step[:3, :3] = rotation
    out = dataclasses.replace(mesh, vertices=mesh.vertices @ rotation.T, transform=step @ mesh.transform)
    return normalize(out, FILL)


def render_camera(file_to_view: np.ndarray, distance: float, fov_x: float) -> "Camera":
    """The preview-rasteriser camera, in the file's coordinates, of the front camera at ``(0, 0, distance)``
    of the view frame (``file_to_view``: ``[4,4]`` similarity file → view)."""
    from pixal3d.core.camera import Camera, look_at

    inv = np.linalg.inv(file_to_view)
    eye = inv @ np.array([0.0, 0.0, distance, 1.0])
    target = inv @ np.array([0.0, 0.0, 0.0, 1.0])
    up = inv[:3, :3] @ np.array([0.0, 1.0, 0.0])
    return Camera(look_at(eye[:3], target[:3], up / np.linalg.norm(up)), float(fov_x))


# --------------------------------------------------------------------------------------------------
# one asset


def _stored_view(png: Path, npz: Path, config_hash: str, source_sha: str) -> dict | None:
    """The view record stored in ``npz``'s header when both files are complete and current, else None."""
    if not (png.is_file() and npz.is_file()):
        return None
    from pixal3d.core.asset import read_asset_header

    try:
        header = read_asset_header(npz)
    except UserError:  # a foreign or damaged file is simply rebuilt
        return None
    view = header.get("source", {}).get("view")
    if not isinstance(view, dict) or view.get("config_hash") != config_hash or view.get("source_sha256") != source_sha:
        return None
    return view


def build_asset(source: Path, asset_id: str, out_dir: Path, config: BuildConfig,
                guard: "EvalOverlapGuard | None" = None) -> dict[str, Any]:
    """Render and voxelise every view of one asset (keeping complete current views).

    Returns its manifest entry ``{"status": "ok", "error": None, "source", "views": [...], "kept": int}``;
    raises on a broken asset (:func:`_asset_job` turns that into an error entry), and :class:`UserError`
    when ``guard`` finds that the asset is an evaluation mesh (checked before anything is written or kept).
    """
    import trimesh
    from PIL import Image

    from pixal3d.core.camera import Camera
    from pixal3d.data.preview import render_scene
    from pixal3d.mesh.io import load_mesh
    from pixal3d.mesh.voxelize import voxelize

    config_hash = config.hash()
    source_sha = file_sha256(source)
    folder = out_dir / asset_id
    mesh = None
    if guard is not None:
        mesh = load_mesh(source, up=config.up, fill=FILL)
        twin = guard.match(source, mesh.vertices, mesh.faces, sha256=source_sha)
        if twin is not None:
            raise UserError(f"refused: matches evaluation mesh {twin}; evaluation meshes never enter training data")
    records: list[dict | None] = []
    for k in range(config.views):
        records.append(_stored_view(folder / f"view_{k:02d}.png", folder / f"view_{k:02d}.npz", config_hash, source_sha))
    kept = sum(r is not None for r in records)
    if kept < config.views:
        if mesh is None:
            mesh = load_mesh(source, up=config.up, fill=FILL)
        try:
            scene = trimesh.load(str(source), force="scene", process=False)
        except Exception as exc:
            raise UserError(f"cannot read {source.name} for rendering: {exc}") from exc
        for k, (params, lighting) in enumerate(zip(sample_views(asset_id, config), sample_lighting(asset_id, config))):
            if records[k] is not None:
                continue
            vm = view_mesh(mesh, view_rotation(params.azimuth_deg, params.elevation_deg))
            used = vm.vertices[np.unique(vm.faces)]
            distance = view_distance(used, params)
            image = render_scene(scene, config.image_size, camera=render_camera(vm.transform, distance, params.fov_x),
                                 supersample=SUPERSAMPLE, environment=view_environment(lighting, config, vm.transform))
            if image[..., 3].max() == 0:
                raise UserError(f"view {k} rendered empty")
            record = {"index": k, "image": f"view_{k:02d}.png", "voxels": f"view_{k:02d}.npz",
                      "azimuth_deg": params.azimuth_deg, "elevation_deg": params.elevation_deg,
                      "fov_x": params.fov_x, "distance": distance, "mesh_scale": 1.0,
                      "lighting": dataclasses.asdict(lighting),
                      "file_to_view": vm.transform.tolist(), "config_hash": config_hash, "source_sha256": source_sha}
            asset, _ = voxelize(vm, config.resolution, camera=Camera.front(params.fov_x, distance, 1.0),
                                source={"asset_id": asset_id, "file": source.name, "view": record})
            record["num_voxels"] = int(len(asset.coords))  # `record` is the dict stored in the header
            folder.mkdir(parents=True, exist_ok=True)
            for name in (record["image"], record["voxels"]):
                remove_stale_temporaries(folder / name)  # left by a run killed while writing this view
            with atomic_output(folder / record["image"]) as tmp:
                Image.fromarray(image, "RGBA").save(tmp, format="PNG")
            failpoint("build.view")
            asset.save(folder / record["voxels"])
            records[k] = record
    views = [{key: r[key] for key in ("index", "image", "voxels", "azimuth_deg", "elevation_deg", "fov_x", "distance",
                                      "mesh_scale", "num_voxels", "lighting")} for r in records]
    return {"status": "ok", "error": None, "views": views, "kept": kept}


def _asset_job(job: tuple[str, str, str, str, BuildConfig, "EvalOverlapGuard | None"]) -> dict[str, Any]:
    """Worker entry: never raises for a broken asset, returns an error entry instead."""
    asset_id, source, rel, out_dir, config, guard = job
    try:
        entry = build_asset(Path(source), asset_id, Path(out_dir), config, guard)
    except UserError as exc:
        entry = {"status": "error", "error": str(exc), "views": [], "kept": 0}
    except Exception as exc:  # any failure inside third-party code is this asset's problem only
        entry = {"status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "views": [], "kept": 0}
    return {"id": asset_id, "source": rel, **entry}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    ignore_interrupts()


# --------------------------------------------------------------------------------------------------
# manifests


def _manifest(config: BuildConfig, shard: tuple[int, int], assets: dict[str, dict]) -> dict[str, Any]:
    return {"format": FORMAT, "version": BUILDER_VERSION, "config": config.as_dict(), "config_hash": config.hash(),
            "shard": list(shard), "assets": dict(sorted(assets.items()))}


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The dataset manifest of ``root``: ``manifest.json`` merged with every ``manifest.shard-i-of-n.json``.

    All files must share one config; an asset listed twice keeps an ``"ok"`` entry over an error (shards
    hold disjoint assets, so this only matters for a ``manifest.json`` written by an earlier merge).
    :class:`UserError` if there is no manifest or the configs differ.
    """
    root = Path(root)
    files = sorted(p for p in root.glob("manifest*.json") if p.name == MANIFEST or _SHARD_FILE_RE.match(p.name))
    if not files:
        raise UserError(f"{root} holds no dataset manifest (run `pixal3d data build` first)")
    merged: dict[str, Any] | None = None
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from exc
        if data.get("format") != FORMAT:
            raise UserError(f"{path} is not a pixal3d dataset manifest")
        if merged is None:
            merged = {**data, "shard": [0, 1], "assets": {}}
        elif data.get("config_hash") != merged["config_hash"]:
            raise UserError(f"{path.name} was built with another config than {files[0].name}; "
                            "remove the stale manifest or rebuild with the same options")
        for asset_id, entry in data["assets"].items():
            old = merged["assets"].get(asset_id)
            if old is None or old.get("status") != "ok":
                merged["assets"][asset_id] = entry
    assert merged is not None
    merged["assets"] = dict(sorted(merged["assets"].items()))
    return merged


def merge_manifests(root: str | os.PathLike) -> tuple[Path, int]:
    """Write the merged manifest (:func:`load_manifest`) as ``root/manifest.json``; returns its path and
    the number of assets."""
    merged = load_manifest(root)
    path = Path(root) / MANIFEST
    write_json(path, merged)
    return path, len(merged["assets"])


# --------------------------------------------------------------------------------------------------
# driver


def build_dataset(assets_dir: str | os.PathLike, out_dir: str | os.PathLike, config: BuildConfig | None = None,
                  workers: int | None = None, shard: tuple[int, int] = (0, 1), progress: bool = False,
                  allow_eval_overlap: bool = False) -> BuildResult:
    """Build (or resume) the dataset of every mesh under ``assets_dir`` into ``out_dir`` (module docstring).

    ``workers`` processes (default: all cores; 1 = in this process); ``shard = (i, n)`` builds only the
    assets ``i, i+n, …`` of the sorted list; ``progress`` shows a tqdm bar on stderr. Broken assets are
    recorded as errors in the manifest, never raised. Evaluation meshes (:mod:`pixal3d.data.overlap`) are
    refused: an asset folder inside the evaluation folder is a :class:`UserError`, a matching asset is an
    error entry. ``allow_eval_overlap`` lifts both (for experiments that never train a shipped model).
    """
    from tqdm import tqdm

    config = config or BuildConfig()
    config.validate()
    i, n = shard
    if not 0 <= i < n:
        raise UserError(f"shard must satisfy 0 <= i < n, got {i}/{n}")
    workers = resolve_workers(workers)
    out = writable_folder(out_dir)
    root = Path(assets_dir)
    guard = None
    if not allow_eval_overlap:
        evalset = default_evalset_dir()
        if evalset is not None and (root.resolve() == evalset.resolve() or evalset.resolve() in root.resolve().parents):
            raise UserError(f"{root} holds the evaluation meshes ({evalset}); they are for `pixal3d evaluate` only "
                            "(--allow-eval-overlap builds them anyway, never for a shipped model)")
        guard = EvalOverlapGuard.default()
    paths = find_assets(root, exclude=out)
    if not paths:
        raise UserError(f"no mesh files (.obj .ply .glb .gltf .stl .off) under {root}")
    ids = asset_ids(root, paths)
    jobs = [(aid, str(p), p.relative_to(root).as_posix(), str(out), config, guard)
            for aid, p in list(zip(ids, paths))[i::n]]
    entries: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), unit="asset", desc="data build", disable=not progress)

    def record(result: dict) -> None:
        entries[result["id"]] = result
        failpoint("build.item")
        bar.update(1)
        failed = sum(e["status"] != "ok" for e in entries.values())
        bar.set_postfix(failed=failed, refresh=False)

    workers = min(workers, max(len(jobs), 1))
    if workers == 1:
        for job in jobs:
            record(_asset_job(job))
    else:
        try:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
                futures = {pool.submit(_asset_job, job): job for job in jobs}
                for fut in as_completed(futures):
                    record(fut.result())
        except BrokenProcessPool:  # a worker was killed (e.g. out of memory): keep what finished
            for job in jobs:
                if job[0] not in entries:
                    record({"id": job[0], "source": job[2], "status": "error", "views": [], "kept": 0,
                            "error": "worker process died (out of memory?); rerun to resume"})
    bar.close()
    manifest_path = out / shard_manifest_name(shard)
    assets = {aid: {k: e[k] for k in ("status", "error", "source", "views")} for aid, e in entries.items()}
    write_json(manifest_path, _manifest(config, shard, assets))
    ok = [e for e in entries.values() if e["status"] == "ok"]
    kept = sum(e["kept"] == config.views for e in ok)
    errors = [f"{aid}: {e['error']}" for aid, e in sorted(entries.items()) if e["status"] != "ok"]
    return BuildResult(built=len(ok) - kept, kept=kept, failed=len(entries) - len(ok), manifest=manifest_path,
                       first_error=errors[0] if errors else None)
