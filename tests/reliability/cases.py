"""The bad-input corpus: one table of cases (:data:`CASES`) that ``test_corpus.py`` runs.

A case names its entry point (``entry``), what it gets (``args``: an argv for a command, or a function
for the Python API and the app's request handler), a ``setup`` that builds the bad input in the case's
own folder, the exit code it must end with (2 unless said otherwise) and a regex the one ``error:`` line
on stderr must match. Every case must also leave every file as it was: no new, modified or temporary
file anywhere under its folder or the shared inputs — except the files a case lists in ``writes`` (a
success case that overwrites an output, a data build that records its errors in a manifest).

Entry points: ``cli`` (the ``pixal3d`` main, in-process, stderr captured), ``inference`` / ``train`` /
``pixal3d`` (a real subprocess of ``inference.py`` / ``train.py`` / ``python -m pixal3d``, so a real
traceback would show), ``api`` (a Python call), ``app`` (the Gradio app's request handler
:func:`app.respond`). ``api`` and ``app`` cases run through the same error path as the commands
(:func:`pixal3d.errors.run_guarded`), so their one line and code are checked the same way.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.pipelines.tiny_folder import OFFICIAL_STEMS

#: generation options that keep the tiny model fast (its fragments are far below the default floater size)
FAST = ["--steps", "2", "--texture_size", "256", "--decimation_target", "4000", "--resolution", "1024",
        "--min_component_area", "0"]


@dataclass
class Ctx:
    """What a case works with: its own folder ``tmp`` (inputs and outputs) and the shared read-only inputs."""

    tmp: Path
    shared: dict[str, Path]
    data: Callable[[], Path] | None = None  # the tiny built dataset (session fixture, built on first use)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def model(self) -> Path:
        return self.shared["model"]

    @property
    def image(self) -> Path:
        return self.shared["image"]

    def out(self, name: str = "out.glb") -> Path:
        return self.tmp / "out" / name

    def copy_model(self) -> Path:
        """A private copy of the tiny model folder, to break."""
        target = self.tmp / "model"
        if not target.exists():
            shutil.copytree(self.model, target)
        return target

    def stem(self, key: str, model: Path | None = None) -> Path:
        return (model or self.copy_model()) / OFFICIAL_STEMS[key]

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


@dataclass
class Case:
    id: str
    category: str  # images | models | parameters | outputs | meshes | training
    entry: str  # cli | inference | train | pixal3d | api | app
    args: Callable[[Ctx], Any]
    message: str  # regex the one error line (or, for a success, the one note line) must match
    setup: Callable[[Ctx], None] | None = None
    code: int = 2
    writes: tuple[str, ...] = ()  # files (relative to the case folder) the case may create or change
    check: Callable[[Ctx], None] | None = None  # further assertions after the run
    fsize_limit: int | None = None  # RLIMIT_FSIZE of a subprocess case: a full disk
    after_progress: bool = False  # fails at the very end of a generation, after its progress bars
    env: dict[str, str] = field(default_factory=dict)  # extra environment of a subprocess case

#: a subprocess environment in which no CUDA device is visible: a CPU-only machine, even on a GPU runner
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


# --------------------------------------------------------------------------------------------------
# builders of bad inputs


def _object(size: int = 48):
    """A small RGBA product shot: an opaque disc on a transparent background."""
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[inside] = (200, 60, 40, 255)
    return Image.fromarray(rgba, "RGBA")


def _encoded(fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    image = _object()
    (image.convert("RGB") if fmt == "JPEG" else image).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header declares ``width × height`` RGB pixels (the data is a few bytes): the
    decompression-bomb guard must refuse it from the header alone."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _save(ctx: Ctx, name: str, image, **kw) -> Path:
    path = ctx.tmp / name
    image.save(path, **kw)
    return path


def _frames(mode: str = "RGB"):
    from PIL import Image

    colours = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]
    return [Image.new(mode, (32, 32), c) for c in colours]


def edit_weights(stem: Path, change: Callable[[dict], None]) -> None:
    """Rewrite ``stem.safetensors`` after ``change(state)`` edits its tensors in place."""
    from safetensors.torch import load_file, save_file

    path = Path(f"{stem}.safetensors")
    state = load_file(str(path))
    change(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _first_float_key(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)


def _poison(value: float):
    def change(state):
        key = _first_float_key(state)
        state[key] = state[key].clone()
        state[key].view(-1)[1] = value

    return change


def _int_tensor(state):
    key = _first_float_key(state)
    state[key] = state[key].to(dtype=__import__("torch").int32)


def _wrong_shape(state):
    key = _first_float_key(state)
    state[key] = state[key].reshape(-1)[:-1].clone()


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _pipeline_json(ctx: Ctx, edit: Callable[[dict], None]) -> None:
    path = ctx.copy_model() / "pipeline.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _cross_attention_flow(ctx: Ctx) -> None:
    """Replace the sparse-structure flow with a TRELLIS.2-style cross-attention flow of the same size."""
    import torch

    from pixal3d.models.loading import read_model_config, save_model
    from pixal3d.models.registry import build_model

    stem = ctx.stem("sparse_structure_flow_model")
    name, args = read_model_config(stem)
    args = {**args, "image_attn_mode": "cross"}
    torch.manual_seed(0)
    save_model(build_model(name, args), stem, name, args)


def _glb(tree: dict, binary: bytes = b"") -> bytes:
    """A binary glTF 2.0 file from a JSON tree (and an optional BIN chunk)."""
    text = json.dumps(tree).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        binary += b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunks)) + chunks


def _external_buffer_tree(uri: str = "missing.bin") -> dict:
    return {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": uri, "byteLength": 48}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 12}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
                      {"bufferView": 1, "componentType": 5125, "count": 3, "type": "SCALAR"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}], "scene": 0,
    }


def _ply_header(faces: int) -> bytes:
    """A binary PLY whose header declares ``faces`` triangles (8 vertices; the face data is absent)."""
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
              f"property float z\nelement face {faces}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    return header + np.zeros((8, 3), np.float32).tobytes()


def _obj(vertices, faces) -> str:
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


def _soup() -> str:
    """Non-manifold triangle soup: 60 random triangles, unshared vertices, some crossing each other."""
    rng = np.random.default_rng(0)
    vertices = rng.uniform(-0.5, 0.5, size=(180, 3))
    return _obj(vertices, np.arange(180).reshape(60, 3))


def _immutable(ctx: Ctx, folder: Path) -> None:
    """Make ``folder`` unwritable: mode 0555, and for root (who ignores modes) the immutable attribute."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    ctx.cleanups.append(lambda: folder.chmod(0o755))
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            import pytest

            pytest.skip("running as root on a file system without chattr +i: cannot make a folder unwritable")
        ctx.cleanups.insert(0, lambda: subprocess.run(["chattr", "-i", str(folder)], capture_output=True))


def _corrupt_checkpoint_run(ctx: Ctx) -> None:
    """A run folder whose only checkpoint's trainer state is garbage (e.g. a disk error)."""
    folder = ctx.tmp / "run" / "ckpts" / "step_0000002"
    folder.mkdir(parents=True)
    (folder / "trainer_state.pt").write_bytes(b"PK\x03\x04 not a torch file")
    (folder / "pipeline.json").write_text("{}")
    (ctx.tmp / "run" / "ckpts" / "latest").write_text("step_0000002\n")


def _train_config(ctx: Ctx, **top) -> Path:
    from tests.training.conftest import load_tiny_config, write_config

    return write_config(ctx.tmp / "config.json", load_tiny_config("ss_vae_tiny", max_steps=2, batch_size=2, **top))


# --------------------------------------------------------------------------------------------------
# argv helpers


def gen(ctx: Ctx, image: str | Path | None = None, *extra, model: Path | None = None, output: Path | None = None) -> list[str]:
    """``pixal3d generate`` argv on the tiny model."""
    return ["generate", "--image", str(image if image is not None else ctx.image),
            "--output", str(output if output is not None else ctx.out()), "--model", str(model or ctx.model),
            *FAST, *map(str, extra)]


def gen_img(name: str, *extra) -> Callable[[Ctx], list[str]]:
    return lambda ctx: gen(ctx, ctx.tmp / name, *extra)


def gen_opt(*extra) -> Callable[[Ctx], list[str]]:
    """``generate`` with the good image and options ``extra`` (appended: they override FAST)."""
    return lambda ctx: gen(ctx, None, *extra)


def gen_model(*extra) -> Callable[[Ctx], list[str]]:
    """``generate`` on the case's broken copy of the model folder."""
    return lambda ctx: gen(ctx, None, *extra, model=ctx.copy_model())


def write(name: str, data: bytes | str | Callable[[], bytes | str]) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.write(name, data() if callable(data) else data)


def api_load_image(name: str, mode: str) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx):
        from pixal3d.image.io import load_image

        image = load_image(ctx.tmp / name)
        assert image.mode == mode and min(image.size) > 0, (image.mode, image.size)

    return call


def app_request(image: str | None, **overrides) -> Callable[[Ctx], Any]:
    """The app's single-image request with the tiny model and fast settings (``overrides`` by settings field),
    through the page's error path (``Service.guarded``: one line, server paths replaced)."""
    def call(ctx: Ctx):
        from pixal3d.web.service import AppConfig, Service, Settings

        service = Service(AppConfig(models={"tiny": Path(ctx.model)}, out_dir=ctx.out("app"), device="cpu"))
        settings = dict(model="tiny", seed=1, fov_degrees=0, resolution="1024", steps="2", guidance="7.5",
                        texture_size=256, face_budget=4000)
        settings.update(overrides)
        upload = str(ctx.tmp / image) if image else None
        return service.guarded(lambda: service.single(upload, Settings(**settings)), [upload])

    return call


def api_generate(options: dict[str, Any], image: str | None = None) -> Callable[[Ctx], Any]:
    """``Pixal3DPipeline.generate`` (the Python API) with ``GenerationOptions(**options)``."""
    def call(ctx: Ctx):
        from pixal3d.pipelines.pixal3d import GenerationOptions, Pixal3DPipeline

        pipeline = Pixal3DPipeline.from_pretrained(ctx.model, device="cpu")
        return pipeline.generate(ctx.tmp / image if image else ctx.image, GenerationOptions(**options))

    return call


def api_from_pretrained(folder: Callable[[Ctx], Path]) -> Callable[[Ctx], Any]:
    def call(ctx: Ctx):
        from pixal3d.pipelines.pixal3d import Pixal3DPipeline

        return Pixal3DPipeline.from_pretrained(folder(ctx), device="cpu")

    return call


def train_args(ctx: Ctx, *extra, config: Path | None = None, data: Path | None = None) -> list[str]:
    return ["--config", str(config or _train_config(ctx)), "--output_dir", str(ctx.tmp / "run"),
            "--data_dir", str(data if data is not None else ctx.data()), "--num_gpus", "0", "--no_progress", *extra]


def _overwrote(ctx: Ctx) -> None:
    out = ctx.tmp / "out.glb"
    assert out.read_bytes()[:4] == b"glTF"
    assert os.stat(out).st_ino != ctx.old_inode, "the existing file was rewritten in place, not replaced"  # type: ignore[attr-defined]


def _existing_output(ctx: Ctx) -> None:
    out = ctx.write("out.glb", b"an older result")
    ctx.old_inode = os.stat(out).st_ino  # type: ignore[attr-defined]


def _soup_voxelized(ctx: Ctx) -> None:
    from pixal3d.core.asset import VoxelAsset

    assert len(VoxelAsset.load(ctx.tmp / "soup.npz").coords) > 0


# --------------------------------------------------------------------------------------------------
# the corpus

C = Case
NOT_IMAGE = "not a raster image format"
DAMAGED = "damaged or incomplete"

CASES: list[Case] = [
    # ---------------------------------------------------------------- images
    C("img-empty", "images", "cli", gen_img("empty.png"), r"image file is empty", write("empty.png", b"")),
    C("img-truncated-png", "images", "cli", gen_img("cut.png"), DAMAGED,
      write("cut.png", lambda: _encoded("PNG")[:200])),
    C("img-truncated-jpeg", "images", "cli", gen_img("cut.jpg"), DAMAGED,
      write("cut.jpg", lambda: _encoded("JPEG", quality=90)[:300])),
    C("img-truncated-webp", "images", "cli", gen_img("cut.webp"), "cannot read image",
      write("cut.webp", lambda: _encoded("WEBP", lossless=True)[:60])),
    C("img-random-bytes", "images", "cli", gen_img("noise.png"), NOT_IMAGE,
      write("noise.png", np.random.default_rng(1).bytes(4096))),
    C("img-1x1", "images", "cli", gen_img("dot.png"), r"only 1x1 pixels",
      lambda ctx: _save(ctx, "dot.png", __import__("PIL.Image", fromlist=["Image"]).new("RGBA", (1, 1), (255, 0, 0, 255)))),
    C("img-decompression-bomb", "images", "cli", gen_img("bomb.png"), r"too large: Image size \(400000000 pixels\).*decompression-bomb guard\); scale it down",
      write("bomb.png", bomb_png())),
    C("img-16bit", "images", "api", api_load_image("g16.png", "RGB"), "",
      lambda ctx: _save(ctx, "g16.png", __import__("PIL.Image", fromlist=["Image"]).fromarray(
          (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60)), format="PNG"), code=0),
    C("img-palette", "images", "api", api_load_image("pal.png", "RGBA"), "",
      lambda ctx: _save(ctx, "pal.png", _object().quantize(8), format="PNG"), code=0),
    C("img-cmyk", "images", "api", api_load_image("cmyk.jpg", "RGB"), "",
      lambda ctx: _save(ctx, "cmyk.jpg", _object().convert("RGB").convert("CMYK"), format="JPEG"), code=0),
    C("img-grey-alpha", "images", "api", api_load_image("la.png", "RGBA"), "",
      lambda ctx: _save(ctx, "la.png", _object().convert("LA"), format="PNG"), code=0),
    C("img-fully-transparent", "images", "cli", gen_img("clear.png"), r"no object found: the image is .*transparent",
      lambda ctx: _save(ctx, "clear.png", __import__("PIL.Image", fromlist=["Image"]).new("RGBA", (64, 64), (90, 90, 90, 0)))),
    C("img-opaque-no-background", "images", "cli", gen_img("flat.png"), r"no object found: background removal",
      lambda ctx: _save(ctx, "flat.png", __import__("PIL.Image", fromlist=["Image"]).new("RGB", (64, 64), (30, 120, 200)))),
    C("img-animated-gif", "images", "api", api_load_image("anim.gif", "RGB"), r"animated \(3 frames\); using the first",
      lambda ctx: _frames("P")[0].save(ctx.tmp / "anim.gif", save_all=True, append_images=_frames("P")[1:]), code=0),
    C("img-animated-webp", "images", "api", api_load_image("anim.webp", "RGB"), r"animated \(3 frames\); using the first",
      lambda ctx: _frames()[0].save(ctx.tmp / "anim.webp", save_all=True, append_images=_frames()[1:], lossless=True),
      code=0),
    C("img-svg", "images", "cli", gen_img("logo.svg"), r"vector files such as SVG",
      write("logo.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>')),
    C("img-pdf", "images", "cli", gen_img("scan.pdf"), NOT_IMAGE,
      lambda ctx: _object().convert("RGB").save(ctx.tmp / "scan.pdf", format="PDF")),
    C("img-directory", "images", "cli", gen_img("photo.png"), r"is a folder, not an image file",
      lambda ctx: (ctx.tmp / "photo.png").mkdir()),
    C("img-missing", "images", "inference", lambda ctx: gen(ctx, ctx.tmp / "nope.png")[1:], r"input image not found"),
    C("img-app-no-upload", "images", "app", app_request(None), r"upload an image first"),
    C("img-app-corrupt", "images", "app", app_request("bad.jpg"), DAMAGED, write("bad.jpg", b"\xff\xd8\xff\xe0 trunc")),
    C("img-api-transparent", "images", "api", api_generate({}, "clear.png"), r"no object found",
      lambda ctx: _save(ctx, "clear.png", __import__("PIL.Image", fromlist=["Image"]).new("RGBA", (64, 64)))),

    # ---------------------------------------------------------------- model folders
    C("model-missing", "models", "cli", lambda ctx: gen(ctx, None, model=ctx.tmp / "nowhere"), r"model folder .* not found"),
    C("model-empty", "models", "cli", lambda ctx: gen(ctx, None, model=ctx.tmp / "empty"), r"pipeline.json is missing",
      lambda ctx: (ctx.tmp / "empty").mkdir()),
    C("model-pipeline-not-json", "models", "cli", gen_model(), r"cannot read .*pipeline.json",
      lambda ctx: (ctx.copy_model() / "pipeline.json").write_text('{"name": "Pixal3D", "args": {')),
    C("model-stage-missing", "models", "cli", gen_model(), r"incomplete: tex_slat_decoder: tex_dec_next_dc_f16c32_fp16.json",
      lambda ctx: Path(f"{ctx.stem('tex_slat_decoder')}.json").unlink()),
    C("model-safetensors-truncated", "models", "cli", gen_model(), r"ss_flow_img_dit_1_3B_64_bf16.safetensors is truncated",
      lambda ctx: _truncate(Path(f"{ctx.stem('sparse_structure_flow_model')}.safetensors"))),
    C("model-wrong-shape", "models", "cli", gen_model(), r"does not fit ElasticSLatFlowModel: 1 wrong shape",
      lambda ctx: edit_weights(ctx.stem("shape_slat_flow_model_1024"), _wrong_shape)),
    C("model-other-stage", "models", "cli", gen_model(), r"shape_slat_decoder .* a SparseUnetVaeDecoder checkpoint.*another stage",
      lambda ctx: _pipeline_json(ctx, lambda c: c["args"]["models"].update(
          shape_slat_decoder=OFFICIAL_STEMS["tex_slat_decoder"]))),
    C("model-other-stage-same-class", "models", "cli", gen_model(), r"shape_slat_flow_model_512 .*in_channels=16.*do not belong",
      lambda ctx: _pipeline_json(ctx, lambda c: c["args"]["models"].update(
          shape_slat_flow_model_512=OFFICIAL_STEMS["tex_slat_flow_model_1024"]))),
    C("model-dtype-mismatch", "models", "cli", gen_model(), r"wrong dtype\(s\): .* file I32 vs model float",
      lambda ctx: edit_weights(ctx.stem("sparse_structure_decoder"), _int_tensor)),
    C("model-nan-weights", "models", "cli", gen_model(), r"tex_dec_next_dc_f16c32_fp16.safetensors: tensor '.*' holds 1 NaN/Inf",
      lambda ctx: edit_weights(ctx.stem("tex_slat_decoder"), _poison(math.nan))),
    C("model-inf-weights", "models", "api", api_from_pretrained(lambda ctx: ctx.copy_model()), r"holds 1 NaN/Inf",
      lambda ctx: edit_weights(ctx.stem("shape_slat_flow_model_512"), _poison(math.inf))),
    C("model-trellis2-cross-attention", "models", "cli", gen_model(), r"cross-attention flow \(TRELLIS.2\).*'proj'",
      _cross_attention_flow),
    C("model-checkpoint-config-not-json", "models", "cli", gen_model(), r"cannot read checkpoint config",
      lambda ctx: Path(f"{ctx.stem('tex_slat_decoder')}.json").write_text("{oops")),
    C("model-inspect-truncated", "models", "cli", lambda ctx: ["inspect", str(ctx.copy_model())], r"is truncated",
      lambda ctx: _truncate(Path(f"{ctx.stem('shape_slat_decoder')}.safetensors"), 0.9)),
    C("model-inspect-other-stage", "models", "cli", lambda ctx: ["inspect", str(ctx.copy_model())],
      r"shape_slat_decoder holds a SparseUnetVaeDecoder checkpoint.*another stage's", lambda ctx: _pipeline_json(
          ctx, lambda c: c["args"]["models"].update(shape_slat_decoder=OFFICIAL_STEMS["tex_slat_decoder"]))),
    C("model-inspect-missing", "models", "cli", lambda ctx: ["inspect", str(ctx.tmp / "nowhere")], r"not found"),
    C("model-inference-truncated", "models", "inference", lambda ctx: gen(ctx, None, model=ctx.copy_model())[1:],
      r"is truncated", lambda ctx: _truncate(Path(f"{ctx.stem('tex_slat_flow_model_1024')}.safetensors"), 0.7)),

    # ---------------------------------------------------------------- parameters
    C("param-steps-zero", "parameters", "cli", gen_opt("--steps", "0"), r"--steps: must be positive"),
    C("param-steps-negative", "parameters", "cli", gen_opt("--steps", "-3"), r"--steps: must be positive"),
    C("param-steps-huge", "parameters", "cli", gen_opt("--steps", "100000"), r"steps must be between 1 and 500"),
    C("param-guidance-negative", "parameters", "cli", gen_opt("--guidance", "-1"), r"--guidance: must be a non-negative"),
    C("param-guidance-huge", "parameters", "cli", gen_opt("--guidance", "1e9"), r"guidance must be between 0 and 100"),
    C("param-fov-zero", "parameters", "cli", gen_opt("--fov", "0"), r"--fov: field of view must be between"),
    C("param-fov-pi", "parameters", "cli", gen_opt("--fov", "3.15"), r"--fov: field of view must be between"),
    C("param-fov-180deg", "parameters", "cli", gen_opt("--fov", "180deg"), r"--fov: field of view must be between"),
    C("param-resolution-not-offered", "parameters", "cli", gen_opt("--resolution", "768"),
      r"no 768 pipeline \(resolutions: 1024, 1536\)"),
    C("param-texture-not-pow2", "parameters", "cli", gen_opt("--texture_size", "1000"), r"power of two.*got 1000"),
    C("param-texture-too-big", "parameters", "cli", gen_opt("--texture_size", "16384"), r"between 16 and 8192"),
    C("param-face-budget-tiny", "parameters", "cli", gen_opt("--decimation_target", "3"), r"at least 4 faces"),
    C("param-seed-negative", "parameters", "cli", gen_opt("--seed", "-5"), r"seed must be an integer between 0"),
    C("param-device-unknown", "parameters", "cli", gen_opt("--device", "tpu"), r"unknown device 'tpu'"),
    C("param-device-cuda-on-cpu", "parameters", "inference", lambda ctx: gen_opt("--device", "cuda")(ctx)[1:],
      r"device 'cuda' is not available here \(available: cpu\); pick one", env=CPU_ONLY),
    C("param-doctor-cuda-on-cpu", "parameters", "cli", lambda ctx: ["doctor", "--device", "cuda:3"], r"not available"),
    C("param-api-steps-zero", "parameters", "api", api_generate({"steps": 0}), r"steps must be between 1 and 500"),
    C("param-api-fov-pi", "parameters", "api", api_generate({"fov": math.pi}), r"fov must be between 0 and pi"),
    C("param-app-texture", "parameters", "app", app_request("obj.png", texture_size=768), r"power of two",
      lambda ctx: shutil.copy(ctx.image, ctx.tmp / "obj.png")),
    C("param-app-fov", "parameters", "app", app_request("obj.png", fov_degrees=200), r"FOV must be between 0 and 180",
      lambda ctx: shutil.copy(ctx.image, ctx.tmp / "obj.png")),
    C("param-voxelize-resolution", "parameters", "cli",
      lambda ctx: ["voxelize", str(ctx.shared["mesh"]), "-o", str(ctx.out("a.npz")), "--resolution", "100"], r"power of two"),
    C("param-render-size", "parameters", "cli",
      lambda ctx: ["render", str(ctx.shared["glb"]), "-o", str(ctx.out("a.png")), "--size", "5"], r"between 16 and 4096"),
    C("param-synth-count-zero", "parameters", "cli", lambda ctx: ["data", "synth", "-n", "0", "-o", str(ctx.tmp / "s")],
      r"at least 1"),
    C("param-build-views-zero", "parameters", "cli",
      lambda ctx: ["data", "build", "--assets", str(ctx.tmp), "-o", str(ctx.tmp / "d"), "--views", "0"], r"--views must be in"),
    C("param-train-gpus-on-cpu", "parameters", "train", lambda ctx: train_args(ctx)[:-3] + ["--num_gpus", "2"],
      r"--num_gpus 2 but only 0 CUDA devices", env=CPU_ONLY),
    C("param-train-unknown-flag", "parameters", "train", lambda ctx: ["--config", "c.json", "--bogus"],
      r"train.py: error: .*--output_dir|unrecognized arguments"),

    # ---------------------------------------------------------------- outputs
    C("out-unwritable-folder", "outputs", "cli", lambda ctx: gen(ctx, output=ctx.tmp / "locked" / "out.glb"),
      r"cannot write output .*locked", lambda ctx: _immutable(ctx, ctx.tmp / "locked")),
    C("out-is-a-directory", "outputs", "cli", lambda ctx: ["export", str(ctx.shared["asset"]), "-o", str(ctx.tmp / "res.glb")],
      r"output .*res.glb is a folder", lambda ctx: (ctx.tmp / "res.glb").mkdir()),
    C("out-parent-is-a-file", "outputs", "cli",
      lambda ctx: ["render", str(ctx.shared["glb"]), "-o", str(ctx.tmp / "notes.txt" / "view.png")],
      r"notes.txt is a file, not a folder", write("notes.txt", "x")),
    C("out-wrong-suffix", "outputs", "cli", lambda ctx: gen(ctx, output=ctx.tmp / "out.obj"), r"output must be a .glb file"),
    C("out-existing-overwritten-atomically", "outputs", "cli",
      lambda ctx: ["export", str(ctx.shared["asset"]), "-o", str(ctx.tmp / "out.glb"), "--texture_size", "64",
                   "--decimation_target", "500", "--quiet"],
      "", _existing_output, code=0, writes=("out.glb",), check=_overwrote),
    C("out-full-disk-export", "outputs", "pixal3d",
      lambda ctx: ["export", str(ctx.shared["asset"]), "-o", str(ctx.out()), "--texture_size", "64",
                   "--decimation_target", "500", "--quiet"],
      r"cannot write .*File too large; free some disk space", fsize_limit=4096),
    C("out-full-disk-generate", "outputs", "inference", lambda ctx: gen(ctx, None, "--save_asset", ctx.out("a.npz"))[1:],
      r"cannot write .*out.glb.*a.npz: File too large; free some disk space", fsize_limit=64 * 1024, after_progress=True),
    C("out-full-disk-synth", "outputs", "pixal3d", lambda ctx: ["data", "synth", "-n", "2", "-o", str(ctx.tmp / "s"),
                                                             "--workers", "1", "-q", "--no-sheet"],
      r"cannot write .*File too large", fsize_limit=2048),

    # ---------------------------------------------------------------- meshes
    C("mesh-empty-file", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "e.obj"), "-o", str(ctx.out("a.npz"))],
      r"mesh file is empty", write("e.obj", b"")),
    C("mesh-no-triangles", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "pts.obj"), "-o", str(ctx.out("a.npz"))],
      r"contains no triangles", write("pts.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n")),
    C("mesh-non-manifold-soup", "meshes", "cli",
      lambda ctx: ["voxelize", str(ctx.tmp / "soup.obj"), "-o", str(ctx.tmp / "soup.npz"), "--resolution", "32"],
      "", write("soup.obj", _soup), code=0, writes=("soup.npz",), check=_soup_voxelized),
    C("mesh-nan-vertices", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "nan.obj"), "-o", str(ctx.out("a.npz"))],
      r"nan.obj: mesh has NaN or infinite vertex", write("nan.obj", _obj([(0, 0, 0), (1, 0, 0), (math.nan, 1, 0)], [(0, 1, 2)]))),
    C("mesh-zero-area", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "flat.obj"), "-o", str(ctx.out("a.npz"))],
      r"every triangle of the mesh is degenerate",
      write("flat.obj", _obj([(0, 0, 0), (0.5, 0.5, 0.5), (1, 1, 1), (0.2, 0.2, 0.2)], [(0, 1, 2), (1, 2, 3)]))),
    C("mesh-10m-faces", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "big.ply"), "-o", str(ctx.out("a.npz"))],
      r"10,000,000 triangles, more than the 5,000,000", write("big.ply", lambda: _ply_header(10_000_000))),
    C("mesh-glb-missing-uri", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "ext.glb"), "-o", str(ctx.out("a.npz"))],
      r"refers to 1 file\(s\) that are not there \(missing.bin\)", write("ext.glb", lambda: _glb(_external_buffer_tree()))),
    C("mesh-gltf-missing-bin", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "ext.gltf"), "-o", str(ctx.out("a.npz"))],
      r"refers to 1 file\(s\)", write("ext.gltf", lambda: json.dumps(_external_buffer_tree("parts/mesh.bin")))),
    C("eval-empty-mesh-folder", "meshes", "cli",
      lambda ctx: ["evaluate", "--meshes", str(ctx.tmp / "none"), "-o", str(ctx.tmp / "ev"), "--baseline", "sphere"],
      r"no mesh files .* under", lambda ctx: (ctx.tmp / "none").mkdir()),
    C("eval-unreadable-only-mesh", "meshes", "cli",
      lambda ctx: ["evaluate", "--meshes", str(ctx.tmp / "in" / "bad.obj"), "-o", str(ctx.tmp / "ev"), "--baseline",
                   "sphere", "--image-size", "64", "--held-out", "1", "--points", "500", "-q"],
      r"bad.obj contains no triangles", write("in/bad.obj", "not a mesh\n")),
    C("eval-model-folder-missing", "models", "cli",
      lambda ctx: ["evaluate", "--meshes", str(ctx.shared["mesh"]), "-o", str(ctx.tmp / "ev"), "--model", str(ctx.tmp / "nomodel")],
      r"model folder .*nomodel not found"),
    C("eval-unknown-baseline", "parameters", "cli",
      lambda ctx: ["evaluate", "--meshes", str(ctx.shared["mesh"]), "-o", str(ctx.tmp / "ev"), "--baseline", "cube"],
      r"unknown baseline 'cube'"),
    C("mesh-unsupported-format", "meshes", "cli", lambda ctx: ["voxelize", str(ctx.tmp / "m.fbx"), "-o", str(ctx.out("a.npz"))],
      r"unsupported mesh format '.fbx'", write("m.fbx", b"Kaydara FBX Binary")),
    C("mesh-build-all-broken", "meshes", "cli",
      lambda ctx: ["data", "build", "--assets", str(ctx.tmp / "a"), "-o", str(ctx.tmp / "d"), "-q", "--views", "1",
                   "--resolution", "16", "--image-size", "32", "--workers", "1"],
      r"all 2 asset\(s\) failed \(first: big: .*10,000,000 triangles", lambda ctx: (
          ctx.write("a/big.ply", _ply_header(10_000_000)),
          ctx.write("a/nan.obj", _obj([(0, 0, 0), (1, 0, 0), (math.nan, 1, 0)], [(0, 1, 2)]))),
      code=1, writes=("d/manifest.json",)),
    C("mesh-render-not-glb", "meshes", "cli", lambda ctx: ["render", str(ctx.tmp / "x.glb"), "-o", str(ctx.out("v.png"))],
      r"x.glb", write("x.glb", np.random.default_rng(2).bytes(512))),
    C("mesh-export-bad-asset", "meshes", "cli", lambda ctx: ["export", str(ctx.tmp / "a.npz"), "-o", str(ctx.out())],
      r"not a readable asset file", write("a.npz", b"PK\x03\x04garbage")),

    # ---------------------------------------------------------------- training
    C("train-config-not-json", "training", "train", lambda ctx: train_args(ctx, config=ctx.tmp / "c.json"),
      r"c.json", write("c.json", "{ not json")),
    C("train-data-missing", "training", "train", lambda ctx: train_args(ctx, data=ctx.tmp / "nodata"), r"data dir .* not found"),
    C("train-damaged-checkpoint", "training", "train", lambda ctx: train_args(ctx),
      r"no loadable checkpoint in .*trainer_state.pt is damaged", _corrupt_checkpoint_run),
    C("train-output-is-a-file", "training", "train", lambda ctx: train_args(ctx), r"--output_dir .*run is a file",
      write("run", "a file where the run folder should be")),
    C("train-default-no-jobs", "training", "cli", lambda ctx: ["train-default", "--steps", "check", "--jobs", "0"],
      r"--jobs must be at least 1"),
    C("train-default-not-a-recipe", "training", "cli", lambda ctx: ["train-default", "--steps", "check", "--recipe",
                                                                    str(ctx.tmp / "r.json")],
      r"not a pixal3d recipe", write("r.json", '{"format": "something else"}')),
]
