"""The Gradio page of ``python app.py``: tabs for a single image, multi-view and a scene, one settings panel, the
results (3-D viewer, alignment view with its opacity slider, turntable, downloads, stage times) and the
examples gallery (click to run). The requests themselves are :class:`pixal3d.web.service.Service`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from pixal3d.errors import UserError
from pixal3d.mesh.cleanup import MIN_COMPONENT_AREA
from pixal3d.web.service import (
    EXTRA_FORMATS,
    RESOLUTION_CHOICES,
    TEXTURE_SIZES,
    Service,
    Settings,
)

log = logging.getLogger("pixal3d.web")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: (file, caption) of the single-image gallery; every example is the project's own (examples/README.md, MIT)
SINGLE_EXAMPLES = [("lamp.png", "lamp"), ("example.png", "snowman"), ("car.png", "car"), ("mug.png", "mug"),
                   ("rocket.png", "rocket")]
MULTIVIEW_EXAMPLE = (["multiview/mug_000.png", "multiview/mug_090.png", "multiview/mug_180.png",
                      "multiview/mug_270.png"], "0,90,180,270", 10, 40)
SCENE_EXAMPLE = "scene.png"

CSS = """
#alignment img, #turntable img { object-fit: contain; }
.pixal3d-note { font-size: 0.9em; opacity: 0.8; }
"""

HEADER = """# Pixal3D — pixel-aligned image-to-3D
One picture (or several views, or a scene of objects) in, a textured PBR GLB out that **lines up with your
pixels**. The *alignment view* is the proof: the result rendered through the input camera, laid over the photo —
slide the opacity to compare. Nothing leaves this server; models are read from its local folders."""


class ImageFile(gr.Image):
    """``gr.Image`` whose upload reaches the handler as the uploaded file's path, not decoded by Gradio, so the
    app's own checks (size, format, pixel count, transparency) give the message for a bad upload. A template of
    ``gr.Image``: the page shows the ordinary image component."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if getattr(payload, "path", None):
            return str(payload.path)
        return super().preprocess(payload)  # a pasted/webcam picture sent inline


def _examples(names: list[str]) -> list[str]:
    return [str(EXAMPLES / n) for n in names]


def _have(names: list[str]) -> bool:
    """Whether the checkout's ``examples/`` holds these files (an installed package has no galleries)."""
    return all((EXAMPLES / n).is_file() for n in names)


def build_app(service: Service, concurrency: int = 1) -> gr.Blocks:
    """The page (not launched). ``concurrency``: requests worked on at once, over all three tabs."""
    models = service.models()
    with gr.Blocks(title="Pixal3D", analytics_enabled=False, fill_width=True) as demo:
        gr.Markdown(HEADER)
        if not models:
            gr.Markdown("⚠️ **No model folder is installed on this server.** Whoever runs it: put a model folder "
                        "(`pipeline.json` + `ckpts/`) under the models root, or start `python app.py --model FOLDER` "
                        "(README, *Model folders*). Generation is unavailable until then.", elem_id="no-model")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                    info="model folders found on this server", elem_id="model",
                                    interactive=len(models) > 1)
                fov = gr.Number(0, label="FOV (degrees; 0 = estimate, else the official default)", elem_id="fov",
                                render=False)
                with gr.Tabs():
                    with gr.Tab("Single image", id="single"):
                        image = ImageFile(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                          label="Image (PNG/JPEG/WebP; a transparent background is used as the mask)",
                                          elem_id="single-image", height=320)
                        run_single = gr.Button("Generate", variant="primary", elem_id="run-single")
                        single_examples = None if not _have([n for n, _ in SINGLE_EXAMPLES]) else gr.Examples(
                            [[p, 0] for p in _examples([n for n, _ in SINGLE_EXAMPLES])], inputs=[image, fov],
                            visible_columns=[0], label="Examples — click one to run it (the official FOV)",
                            elem_id="single-examples")
                    with gr.Tab("Multi-view", id="multiview"):
                        views = gr.File(file_count="multiple", file_types=["image"], elem_id="mv-views",
                                        label="Views of one object (same size; the output is in the first view's frame)")
                        with gr.Row():
                            azimuths = gr.Textbox("0,90,180,270", label="Azimuths (degrees, one per view)",
                                                  elem_id="mv-azimuths")
                            elevation = gr.Number(0, label="Elevation (degrees)", elem_id="mv-elevation")
                        cameras = gr.File(file_types=[".json"], label="…or a transforms.json (replaces the azimuths)",
                                          elem_id="mv-cameras")
                        run_multiview = gr.Button("Generate from the views", variant="primary", elem_id="run-multiview")
                        files, az, el, fov_deg = MULTIVIEW_EXAMPLE
                        multiview_examples = None if not _have(files) else gr.Examples([[_examples(files), az, el, fov_deg]],
                                                         inputs=[views, azimuths, elevation, fov],
                                                         label="Example — click to run (FOV 40°)",
                                                         example_labels=["mug, four views"], elem_id="mv-examples")
                    with gr.Tab("Scene", id="scene"):
                        scene_image = ImageFile(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                                label="A picture of several objects", elem_id="scene-image", height=320)
                        labels = gr.File(file_types=["image"], elem_id="scene-labels",
                                         label="Object labels (optional): one integer or colour per object, 0/black = background")
                        with gr.Row():
                            min_area = gr.Number(0.002, label="Smallest object (fraction of the picture)")
                            camera_height = gr.Number(1.0, label="Camera height above the ground")
                            pitch = gr.Number(15.0, label="Camera pitch down (degrees)")
                        run_scene = gr.Button("Compose the scene", variant="primary", elem_id="run-scene")
                        scene_examples = None if not _have([SCENE_EXAMPLE]) else gr.Examples(
                            [[str(EXAMPLES / SCENE_EXAMPLE), 0]], inputs=[scene_image, fov], visible_columns=[0],
                            label="Example — click to run (the official FOV)", example_labels=["three objects"],
                            elem_id="scene-examples")
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        seed = gr.Number(42, precision=0, label="Seed", elem_id="seed")
                        random_seed = gr.Checkbox(False, label="Random seed each run", elem_id="random-seed")
                        fov.render()
                    with gr.Row():
                        steps = gr.Textbox("", label="Steps per flow", placeholder="the model's (official 12)",
                                           elem_id="steps")
                        guidance = gr.Textbox("", label="Guidance", placeholder="the model's (official 7.5)",
                                              elem_id="guidance")
                        resolution = gr.Dropdown(RESOLUTION_CHOICES, value=RESOLUTION_CHOICES[0],
                                                 label="Final resolution", elem_id="resolution")
                    with gr.Row():
                        texture_size = gr.Radio(TEXTURE_SIZES, value="auto", label="Texture size (auto: by resolution)",
                                                elem_id="texture-size")
                        face_budget = gr.Slider(0, 1_000_000, value=0, step=10_000, label="Face budget (0: by resolution)",
                                                elem_id="face-budget")
                    with gr.Row():
                        min_part = gr.Textbox("", label="Drop parts smaller than (unit-cube area; 0 keeps all)",
                                              placeholder=f"default {MIN_COMPONENT_AREA:g}", elem_id="min-part")
                        formats = gr.CheckboxGroup(EXTRA_FORMATS, value=[], label="Also download as (GLB always)",
                                                   elem_id="formats")
            with gr.Column(scale=7, min_width=420):
                viewer = gr.Model3D(label="Result (GLB)", clear_color=(0.86, 0.86, 0.88, 1.0), height=420,
                                    elem_id="viewer")
                with gr.Row():
                    alignment = gr.Image(label="Alignment: the output through the input camera, over the photo",
                                         type="filepath", interactive=False, elem_id="alignment", height=300)
                    turntable = gr.Image(label="Turntable", type="filepath", interactive=False, elem_id="turntable",
                                         height=300)
                opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Render opacity over the photo",
                                    elem_id="opacity")
                facts = gr.Markdown(elem_id="facts")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                timings = gr.Dataframe(headers=["stage", "seconds"], datatype=["str", "number"], label="Stage times",
                                       interactive=False, elem_id="timings")
                result_state = gr.State(None)

        settings = [model, seed, random_seed, fov, steps, guidance, resolution, texture_size, face_budget, min_part,
                    formats]
        outputs = [viewer, alignment, turntable, downloads, timings, facts, seed, opacity, result_state]

        def respond(call, progress: gr.Progress, uploads):
            try:
                outcome = service.guarded(lambda: call(lambda fraction, text: progress(fraction, desc=text)), uploads)
            except UserError as exc:  # one line for the visitor (the shared error path)
                log.warning("request refused: %s", exc)
                raise gr.Error(str(exc), print_exception=False) from exc
            return (str(outcome.glb), str(outcome.alignment), str(outcome.turntable), [str(p) for p in outcome.downloads],
                    outcome.timings, outcome.info, outcome.seed, 0.5,
                    {"photo": str(outcome.photo), "overlay": str(outcome.overlay)})

        def on_single(image_path, model_, seed_, random_, fov_, steps_, guidance_, resolution_, texture_, faces_,
                      part_, formats_, progress=gr.Progress()):
            s = Settings(model_, seed_, random_, fov_, steps_, guidance_, resolution_, texture_, faces_, part_, formats_)
            return respond(lambda report: service.single(image_path, s, report), progress, [image_path])

        def on_multiview(views_, azimuths_, elevation_, cameras_, model_, seed_, random_, fov_, steps_, guidance_,
                         resolution_, texture_, faces_, part_, formats_, progress=gr.Progress()):
            s = Settings(model_, seed_, random_, fov_, steps_, guidance_, resolution_, texture_, faces_, part_, formats_)
            uploads = list(views_ or []) + ([cameras_] if cameras_ else [])
            return respond(lambda report: service.multiview(views_, azimuths_, elevation_, cameras_, s, report),
                           progress, uploads)

        def on_scene(image_path, labels_, min_area_, height_, pitch_, model_, seed_, random_, fov_, steps_, guidance_,
                     resolution_, texture_, faces_, part_, formats_, progress=gr.Progress()):
            s = Settings(model_, seed_, random_, fov_, steps_, guidance_, resolution_, texture_, faces_, part_, formats_)
            return respond(lambda report: service.scene(image_path, labels_, s, min_area_, height_, pitch_, report),
                           progress, [image_path, labels_])

        def on_blend(state, value):
            try:
                path = service.blend((state or {}).get("photo"), (state or {}).get("overlay"), value)
            except Exception as exc:  # noqa: BLE001
                raise gr.Error(service.message(exc), print_exception=False) from exc
            return str(path) if path else None

        common = dict(outputs=outputs, concurrency_id="generate", concurrency_limit=concurrency)
        run_single.click(on_single, [image] + settings, api_name="single", **common)
        run_multiview.click(on_multiview, [views, azimuths, elevation, cameras] + settings, api_name="multiview", **common)
        run_scene.click(on_scene, [scene_image, labels, min_area, camera_height, pitch] + settings, api_name="scene",
                        **common)
        for gallery, handler, inputs in ((single_examples, on_single, [image]),
                                         (multiview_examples, on_multiview, [views, azimuths, elevation, cameras]),
                                         (scene_examples, on_scene, [scene_image, labels, min_area, camera_height, pitch])):
            if gallery is not None:  # click to run: the example's inputs are loaded, then the tab's request runs
                gallery.load_input_event.then(handler, inputs + settings, api_visibility="private", **common)
        opacity.release(on_blend, [result_state, opacity], [alignment], api_name="blend", concurrency_limit=8,
                        show_progress="hidden")
    return demo
