"""Upstream entry point of the web demo: ``python app.py`` (Gradio; ``pip install -e .[app]``).

Upload an image, pick the options, get a pixel-aligned PBR GLB in a 3-D viewer, an input-view
preview and per-stage timings. Options mirror ``inference.py``; the model folder defaults to the
project's default model (see README, "Model folders").
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from pixal3d import paths
from pixal3d.errors import UserError

RESOLUTION_CHOICES = ["model default", "1024", "1536"]
TEXTURE_SIZES = [512, 1024, 2048, 4096]


class PipelineCache:
    """Keeps the last opened pipeline so repeated requests on one model folder do not reload it."""

    def __init__(self, device: str | None, low_vram: bool):
        self.device, self.low_vram = device, low_vram
        self.folder: Path | None = None
        self.pipeline = None

    def get(self, folder: Path):
        from pixal3d.pipelines.pixal3d import Pixal3DPipeline

        if self.pipeline is None or folder != self.folder:
            self.pipeline = Pixal3DPipeline.from_pretrained(folder, device=self.device, low_vram=self.low_vram)
            self.folder = folder
        return self.pipeline


def generate(cache: PipelineCache, image_path: str | None, model: str, seed: float, fov_degrees: float,
             resolution: str, steps: float, guidance: float, texture_size: float, decimation_target: float,
             out_dir: Path) -> tuple[str, str, str, str]:
    """One request: returns (GLB path for the viewer, preview PNG path, GLB path for download, log text).

    Raises :class:`UserError` for bad input (:func:`respond` turns any failure into the one-line message
    the app shows). Options and the image are checked before the model is loaded; the GLB and its
    preview appear together or not at all.
    """
    from pixal3d.export.glb import ExportOptions
    from pixal3d.pipelines.pixal3d import GenerationOptions, prepare_image
    from pixal3d.utils.files import atomic_outputs

    if not image_path:
        raise UserError("upload an image first")

    def number(value, what: str, kind=float):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{what} must be a number, got {value!r}") from None
        if not math.isfinite(x) or (kind is int and x != int(x)):
            raise UserError(f"{what} must be {'a whole number' if kind is int else 'a finite number'}, got {value!r}")
        return kind(x)

    fov = number(fov_degrees or 0, "FOV")
    if not 0 <= fov < 180:
        raise UserError(f"FOV must be between 0 and 180 degrees (0 = estimate), got {fov_degrees}")
    options = GenerationOptions(
        seed=number(seed, "seed", int),
        fov=math.radians(fov) if fov > 0 else None,
        steps=number(steps, "steps", int) if steps else None,
        guidance=number(guidance, "guidance") if guidance is not None else None,
    ).validate()
    export = ExportOptions(texture_size=number(texture_size, "texture size", int),
                           decimation_target=number(decimation_target, "face budget", int))
    export.validate()
    folder = Path(model).expanduser() if model else paths.component_path("pixal3d-small")
    if not (folder / "pipeline.json").is_file():
        raise UserError(f"no model folder at {folder} (pipeline.json missing; see README, 'Model folders')")
    prepared = prepare_image(image_path)
    pipeline = cache.get(folder)
    if resolution != RESOLUTION_CHOICES[0]:
        options.pipeline_type = pipeline.pipeline_type_for(number(resolution, "resolution", int))
    result = pipeline.generate(prepared, options)
    glb = Path(out_dir) / f"pixal3d_seed{options.seed}.glb"
    preview = glb.with_suffix(".png")
    with atomic_outputs([glb, preview]) as (glb_tmp, preview_tmp):
        result.save_glb(glb_tmp, export)
        result.save_preview(preview_tmp, glb_tmp)
    return str(glb), str(preview), str(glb), result.summary()


def respond(cache: PipelineCache, out_dir: Path, *inputs):
    """The app's request handler: :func:`generate`, with any failure turned into the one line the shared
    error path gives (:func:`pixal3d.errors.describe`), raised as :class:`UserError` (a ``gr.Error`` in the app)."""
    from pixal3d.errors import describe

    try:
        return generate(cache, *inputs, out_dir=out_dir)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 — the user sees one line, never a traceback
        raise UserError(describe(exc)[1]) from exc


def build_app(device: str | None = None, low_vram: bool = False, out_dir: Path | None = None):
    """The Gradio Blocks of the demo (not launched)."""
    import gradio as gr

    cache = PipelineCache(device, low_vram)
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix="pixal3d_app_"))

    def on_generate(*inputs):
        try:
            return respond(cache, out_dir, *inputs)
        except UserError as exc:
            raise gr.Error(str(exc)) from exc

    with gr.Blocks(title="Pixal3D") as demo:
        gr.Markdown("# Pixal3D — pixel-aligned image-to-3D\nA textured PBR GLB that lines up with your image's pixels.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Input image (RGBA alpha is used as the mask)", image_mode="RGBA")
                model = gr.Textbox(value=str(paths.component_path("pixal3d-small")), label="Model folder")
                with gr.Row():
                    seed = gr.Number(value=42, precision=0, label="Seed")
                    fov = gr.Number(value=0, label="FOV (degrees, 0 = estimate/default)")
                resolution = gr.Radio(RESOLUTION_CHOICES, value=RESOLUTION_CHOICES[0], label="Final resolution")
                with gr.Accordion("Sampling and export", open=False):
                    steps = gr.Slider(1, 50, value=12, step=1, label="Steps per flow")
                    guidance = gr.Slider(0.0, 15.0, value=7.5, step=0.1, label="Guidance strength")
                    texture_size = gr.Dropdown(TEXTURE_SIZES, value=2048, label="Texture size")
                    decimation = gr.Slider(10_000, 1_000_000, value=200_000, step=10_000, label="Face budget")
                run = gr.Button("Generate", variant="primary")
            with gr.Column():
                viewer = gr.Model3D(label="GLB", clear_color=(0.15, 0.15, 0.15, 1.0))
                preview = gr.Image(label="Input-view render", type="filepath")
                download = gr.File(label="Download GLB")
                log = gr.Textbox(label="Stages", lines=10)
        run.click(on_generate, [image, model, seed, fov, resolution, steps, guidance, texture_size, decimation],
                  [viewer, preview, download, log])
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Pixal3D web demo (Gradio).")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--low_vram", action="store_true", help="one stage on the device at a time")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the app needs gradio: pip install -e .[app]")
        return 2
    build_app(args.device, args.low_vram).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
