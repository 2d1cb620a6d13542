"""What is scored: the model (oracle or heuristic camera) and the baselines, behind one interface.

A method turns a :class:`~pixal3d.evaluation.groundtruth.GroundTruthView` (and a number of input views)
into a :class:`Prediction`: a surface in the input camera's view frame plus how to render it and how to
keep it as a GLB.

**Oracle mode** (default): the pipeline gets the full, uncropped RGBA canvas composited over black,
``preprocess=False`` and the true camera (FOV, distance, ``mesh_scale`` 1), so its output is already in
the ground truth's frame; no alignment is done.

**Heuristic mode**: the pipeline runs as a user would run it on the RGBA image (its own crop and its
own default camera: MoGe-2 if installed, else the official default FOV), then the output is aligned to
the ground truth with :func:`~pixal3d.evaluation.metrics.fit_scale_translation` — a uniform scale and a
translation (no rotation: both frames share the viewing direction), bounding-box initialised and
refined by 20 rounds of scale/translation ICP on 5 000 samples of each surface. Reported separately.

Metrics use the raw decoded dual-grid mesh (one vertex per voxel, per-vertex PBR of that voxel) in the
voxel frame; the GLB under ``OUT/glb/`` is the normal export of the same asset (1024² textures, and
every component kept, like the scored mesh).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pixal3d.core.render import RenderMesh
from pixal3d.errors import UserError
from pixal3d.evaluation import baselines
from pixal3d.evaluation.groundtruth import NEUTRAL_MATERIAL, GroundTruthView, on_black, render_extra_inputs
from pixal3d.utils.files import atomic_output

#: names accepted by ``--baseline`` (``ground_truth`` is the harness self-check: the GT mesh itself)
BASELINES = ("sphere", "silhouette_hull", "ground_truth")
MODES = ("oracle", "heuristic")
#: surface samples per side used by the heuristic-mode alignment
ALIGN_POINTS = 5_000


@dataclass
class Prediction:
    """A predicted surface in the input view frame (unit cube) and its render primitives."""

    vertices: np.ndarray
    faces: np.ndarray
    render_meshes: list[RenderMesh]
    info: dict = field(default_factory=dict)
    write_glb: Callable[[Path], None] | None = None


def plain_prediction(vertices: np.ndarray, faces: np.ndarray, info: dict | None = None) -> Prediction:
    """A geometry-only prediction with the neutral material; its GLB is the bare mesh."""
    factor, metallic, roughness = NEUTRAL_MATERIAL
    mesh = RenderMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), None, None, factor.copy(),
                      metallic=metallic, roughness=roughness)

    def write(path: Path) -> None:
        import trimesh

        data = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="glb")
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)

    return Prediction(mesh.vertices, mesh.faces, [mesh], info or {}, write)


class Method:
    """One scored method: ``name`` (table column), ``kind`` (``baseline`` / ``model``)."""

    name = "method"
    kind = "baseline"
    #: whether it accepts several input views
    multi_view = False
    #: whether its prediction ignores the input views' count (the runner then scores it once per view and
    #: reports that score under every view count)
    view_independent = False

    def predict(self, gt: GroundTruthView, num_views: int = 1) -> Prediction:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}


class Sphere(Method):
    """The largest sphere in the unit cube."""

    name = "sphere"
    multi_view = True
    view_independent = True

    def __init__(self):
        self._mesh = baselines.sphere()

    def predict(self, gt: GroundTruthView, num_views: int = 1) -> Prediction:
        return plain_prediction(*self._mesh, {"radius": 0.5})


class SilhouetteHull(Method):
    """The input mask carved through the frustum inside the cube (several views: the visual hull)."""

    name = "silhouette_hull"
    multi_view = True

    def predict(self, gt: GroundTruthView, num_views: int = 1) -> Prediction:
        if num_views == 1:
            return plain_prediction(*baselines.silhouette_hull(gt.renders["input"]["mask"], gt.input), {"views": 1})
        cameras, renders = render_extra_inputs(gt, num_views)
        v, f = baselines.visual_hull([r["mask"] for r in renders], cameras, grid=baselines.VISUAL_HULL_GRID)
        return plain_prediction(v, f, {"views": num_views, "grid": baselines.VISUAL_HULL_GRID})


class GroundTruthSelfCheck(Method):
    """The ground-truth mesh itself with its materials: checks the harness (IoU 1, Chamfer 0)."""

    name = "ground_truth"
    multi_view = True
    view_independent = True

    def predict(self, gt: GroundTruthView, num_views: int = 1) -> Prediction:
        return Prediction(gt.vertices, gt.faces, gt.render_meshes, {"self_check": True})


def make_baseline(name: str) -> Method:
    """The baseline called ``name`` (:data:`BASELINES`)."""
    table = {"sphere": Sphere, "silhouette_hull": SilhouetteHull, "ground_truth": GroundTruthSelfCheck}
    if name not in table:
        raise UserError(f"unknown baseline {name!r} (use one of {', '.join(BASELINES)})")
    return table[name]()


def folder_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over a folder's files (sorted relative POSIX paths, each path and its bytes)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def oracle_input(render: dict[str, np.ndarray]):
    """The oracle input of a view: its shaded render on black (:func:`on_black`) with its true silhouette."""
    from pixal3d.pipelines.pixal3d import PreparedImage

    return PreparedImage(on_black(render["shaded"]), {}, np.asarray(render["shaded"])[..., 3] >= 0.5)


class ModelMethod(Method):
    """The Pixal3D pipeline of a model folder, in oracle or heuristic camera mode (module docstring)."""

    kind = "model"
    multi_view = True  # several oracle views through the pipeline's multi-view path (uncropped, true cameras)

    def __init__(self, folder: str | os.PathLike, mode: str = "oracle", seed: int = 42, steps: int | None = None,
                 resolution: int | None = None, device: str | None = None, texture_size: int = 1024,
                 quantize: str = "none", silhouette: bool | None = None):
        from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline

        if mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"model folder {folder} not found")
        self.quantize = quantize or "none"
        self.pipeline = Pixal3DPipeline.from_pretrained(folder, device=device, quantize=self.quantize)
        self.folder, self.mode, self.seed, self.steps = folder, mode, int(seed), steps
        self.name = f"model ({mode})" if self.quantize == "none" else f"model ({mode}, {self.quantize})"
        self.sha256 = folder_hash(folder)
        self.pipeline_type = self.pipeline.pipeline_type_for(resolution) if resolution else None
        self.texture_size = int(texture_size)
        self.silhouette = self.pipeline.silhouette_enabled(GenerationOptions(silhouette=silhouette))

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "folder": str(self.folder),
                "sha256": self.sha256, "seed": self.seed, "steps": self.steps, "quantize": self.quantize,
                "pipeline_type": self.pipeline_type or self.pipeline.default_pipeline_type(),
                "silhouette": self.silhouette}

    def predict(self, gt: GroundTruthView, num_views: int = 1) -> Prediction:
        from PIL import Image

        from pixal3d.export.glb import ExportOptions, asset_surface
        from pixal3d.pipelines.pixal3d import GenerationOptions

        if num_views != 1 and self.mode != "oracle":
            raise UserError("the multi-view protocol needs the true cameras: use --mode oracle with --num-views > 1")
        if num_views != 1:
            cameras, renders = render_extra_inputs(gt, num_views)
            image = [oracle_input(r) for r in renders]
            options = GenerationOptions(seed=self.seed, cameras=cameras, steps=self.steps, pipeline_type=self.pipeline_type,
                                        silhouette=self.silhouette)
        elif self.mode == "oracle":
            image = oracle_input(gt.renders["input"])
            options = GenerationOptions(seed=self.seed, camera=gt.camera(), preprocess=False, steps=self.steps,
                                        pipeline_type=self.pipeline_type, silhouette=self.silhouette)
        else:
            image = Image.fromarray(gt.image, "RGBA")
            options = GenerationOptions(seed=self.seed, preprocess=True, steps=self.steps, pipeline_type=self.pipeline_type,
                                        silhouette=self.silhouette)
        result = self.pipeline.generate(image, options, progress=False)
        asset = result.asset
        vertices, faces = asset_surface(asset)
        attrs = np.asarray(asset.attrs, np.float64)
        info = {"camera": result.info.get("camera"), "resolution": asset.resolution, "voxels": int(len(asset.coords)),
                "timings": {k: round(float(v), 3) for k, v in result.timings.items()}}
        if self.mode == "heuristic" and len(faces):
            from pixal3d.evaluation.metrics import fit_scale_translation, sample_surface

            s, t = fit_scale_translation(sample_surface(vertices, faces, ALIGN_POINTS),
                                         sample_surface(gt.vertices, gt.faces, ALIGN_POINTS))
            vertices = vertices * s + t
            info["alignment"] = {"scale": s, "translation": [float(x) for x in t]}
        if len(attrs) == len(vertices):  # the dual-grid mesh: vertex i is voxel i
            colors = np.concatenate([attrs[:, :3], np.ones((len(attrs), 1))], 1)
            mesh = RenderMesh(vertices, faces, None, None, np.ones(4, np.float32), metallic=1.0, roughness=1.0,
                              vertex_colors=colors, vertex_metallic_roughness=attrs[:, 3:5].copy())
        else:  # a stored mesh without per-vertex attributes
            mesh = plain_prediction(vertices, faces).render_meshes[0]

        def write(path: Path) -> None:
            # every component is kept, like the raw mesh that is scored
            result.save_glb(path, ExportOptions(texture_size=self.texture_size, min_component_area=0.0), progress=False)

        return Prediction(vertices, faces, [mesh], info, write)
