"""Upstream entry point of the web demo: ``python app.py`` (Gradio; ``pip install -e .[app]``).

Tabs for a single image, several views of one object and a scene of objects; the bundled examples run with one
click; progress per stage while it works; the GLB in a 3-D viewer, the alignment view (the output through the
input camera over the photo, with an opacity slider), a turntable, downloads (GLB, OBJ, PLY, STL, USDZ) and the
stage times. The settings are those of ``inference.py``. Visitors choose a model from the folders found on the
server (or the one ``--model`` names); they never type a server path.

    python app.py [--model FOLDER|NAME] [--host 127.0.0.1] [--port 7860] [--share] [--concurrency N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from pixal3d.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from pixal3d.cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="app.py", description="Pixal3D web demo (Gradio).")
    parser.add_argument("--model", default=None,
                        help="serve only this model folder (a path, or a name under the models root); default: every "
                             "Pixal3D model folder found under the models root ($PIXAL3D_MODELS or models/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available)")
    parser.add_argument("--low_vram", action="store_true", help="one stage on the device at a time")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests worked on at once (default 1; generation itself is one at a time, the export and "
                             "previews of one request overlap the next)")
    parser.add_argument("--queue-size", type=int, default=64, help="requests that may wait in the queue (default 64)")
    parser.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload, MB (default 25)")
    parser.add_argument("--max-pixels", type=float, default=40e6, help="largest image, pixels (default 40 million)")
    parser.add_argument("--turntable-frames", type=int, default=24, help="frames of the turntable GIF (default 24)")
    parser.add_argument("--output-dir", default=None,
                        help="where request outputs are kept for download (default: a new temporary folder); "
                             "folders older than 6 hours are removed")
    parser.add_argument("--no-preload", action="store_true", help="load the model on the first request, not at launch")
    return parser


def make_service(args: argparse.Namespace):
    """The request service of the parsed flags; :class:`UserError` for a bad ``--model`` or flag."""
    from pixal3d.web.service import AppConfig, Service, find_models

    for flag, value, low in (("--concurrency", args.concurrency, 1), ("--queue-size", args.queue_size, 1),
                             ("--turntable-frames", args.turntable_frames, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if not args.max_upload_mb > 0 or not args.max_pixels > 0:
        raise UserError("--max-upload-mb and --max-pixels must be positive")
    models, notes = find_models(args.model)
    for note in notes:
        print(f"note: model folder left out: {note}", file=sys.stderr)
    out_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="pixal3d_app_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    config = AppConfig(models=models, out_dir=out_dir.resolve(), device=args.device, low_vram=args.low_vram,
                       max_upload_mb=args.max_upload_mb, max_pixels=int(args.max_pixels),
                       turntable_frames=args.turntable_frames)
    return Service(config)


def build_app(device: str | None = None, low_vram: bool = False, out_dir: Path | None = None, model: str | None = None,
              concurrency: int = 1):
    """The Gradio Blocks of the demo (not launched), e.g. for ``gradio`` hosting or tests."""
    from pixal3d.web.ui import build_app as page

    argv = ["--device", device] if device else []
    argv += (["--low_vram"] if low_vram else []) + (["--output-dir", str(out_dir)] if out_dir else [])
    argv += ["--model", model] if model else []
    return page(make_service(build_parser().parse_args(argv)), concurrency)


def launch(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the app needs gradio: pip install -e .[app]") from None
    from pixal3d.devices import select_device
    from pixal3d.web.ui import CSS
    from pixal3d.web.ui import build_app as page

    device = select_device(args.device)
    args.device = str(device)
    concurrency = args.concurrency or 1
    service = make_service(args)
    if not service.models():
        print("warning: no model folder found (looked under the models root; see README, 'Model folders'); the page "
              "will say so and generation is unavailable", file=sys.stderr)
    elif not args.no_preload:
        print(f"loading {service.models()[0]} on {device} …", file=sys.stderr, flush=True)
        service.preload()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo = page(service, concurrency)
    demo.queue(default_concurrency_limit=concurrency, max_size=args.queue_size)
    print(f"models: {', '.join(service.models()) or 'none'}; outputs in {service.config.out_dir}; "
          f"concurrency {concurrency}, queue {args.queue_size}", file=sys.stderr, flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                max_file_size=f"{args.max_upload_mb:g}mb", allowed_paths=[str(service.config.out_dir)],
                css=CSS, footer_links=["api", "settings"], show_error=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    from pixal3d.errors import run_guarded

    args = build_parser().parse_args(argv)
    return run_guarded(launch, args)


if __name__ == "__main__":
    raise SystemExit(main())
