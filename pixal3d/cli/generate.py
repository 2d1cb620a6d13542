"""``pixal3d generate`` (also ``python inference.py``): one image (or several views with cameras) in, one
pixel-aligned PBR GLB out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pixal3d import paths
from pixal3d.cli import options
from pixal3d.cli.export import add_export_arguments, export_options
from pixal3d.errors import UserError
from pixal3d.utils.files import atomic_outputs, check_output_path

def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``inference.py`` / ``pixal3d generate`` (upstream flags first)."""
    parser.add_argument("--image", action="append",
                        help="input image (PNG/JPEG/WebP…; RGBA alpha is used as the mask); repeat for the views of one "
                             "object (multi-view, with --cameras or --azimuths; the output is in the first view's frame)")
    parser.add_argument("--output", help="output .glb path (with --image)")
    parser.add_argument("--input-dir", "--input_dir", dest="input_dir", default=None,
                        help="batch: every image in this folder (not its sub-folders), one GLB each, instead of --image")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None,
                        help="batch: folder of the outputs (<image stem>.glb …); finished images are skipped, so a "
                             "stopped batch resumes; a summary table is printed and written to summary[.shard-I-of-N].json")
    parser.add_argument("--shard", type=options.shard, default=None,
                        help="batch: process only shard I of N (1-based, e.g. 1/4): every N-th image of the sorted list")
    parser.add_argument("--format", action="append", default=None,
                        help="also write these formats beside the GLB: obj (+ .mtl + _basecolor.png), ply (vertex colours), "
                             "stl, usdz (needs usd-core); repeat or comma-separate, e.g. --format obj,usdz")
    parser.add_argument("--low_vram", action="store_true", help="keep one stage on the device at a time (and 1024 cascade by default)")
    parser.add_argument("--resolution", type=options.positive_int, default=None,
                        help="final voxel resolution: 1024 or 1536 for official weights (default: 1536, 1024 with --low_vram; "
                             "a model folder may define others)")
    parser.add_argument("--model", default=None,
                        help="model folder (pipeline.json + ckpts/), or a folder name under the models root (e.g. Pixal3D); "
                             f"default: {paths.component_path('pixal3d-small')}")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42, as upstream)")
    parser.add_argument("--fov", type=options.parse_fov, default=None,
                        help="horizontal field of view: radians (0.2) or degrees (40deg); default: estimated if MoGe-2 is installed, else the official default")
    parser.add_argument("--cameras", default=None,
                        help="multi-view: NeRF/Blender transforms.json, one frame per --image in order "
                             "(transform_matrix c2w, camera_angle_x or fov per frame or top level, optional mesh_scale)")
    parser.add_argument("--azimuths", type=options.azimuths, default=None,
                        help="multi-view turntable shorthand: camera azimuths in degrees, one per --image, e.g. 0,90,180,270 "
                             "(with --elevation and --fov; distance from the FOV as for one image)")
    parser.add_argument("--elevation", type=float, default=0.0, help="camera elevation in degrees for --azimuths (default 0)")
    parser.add_argument("--silhouette", action=argparse.BooleanOptionalAction, default=None,
                        help="hold the result to the input silhouettes: carve what lies outside the mask of any view "
                             "and snap the rim onto it (default: the model's setting; on for pixal3d-small, off for "
                             "official weights)")
    parser.add_argument("--steps", type=options.positive_int, default=None, help="sampling steps for every flow (default: the model's, 12 for official weights)")
    parser.add_argument("--guidance", type=options.non_negative_float, default=None, help="guidance strength for the structure and shape flows (default: the model's, 7.5)")
    parser.add_argument("--max_num_tokens", type=options.positive_int, default=None, help="token budget of the 1536 cascade (default 49152)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best available, or $PIXAL3D_DEVICE)")
    parser.add_argument("--quantize", choices=["none", "int8"], default="none",
                        help="int8: the flows' Linear layers as PyTorch dynamic int8 on the CPU (opt-in, changes the "
                             "numbers; default none = exact)")
    add_export_arguments(parser)
    parser.add_argument("--save_asset", default=None, help="also write the decoded asset (.npz) for re-export with `pixal3d export`")
    parser.add_argument("--preview", action="store_true", help="also write an input-view render beside the GLB (<output>.png)")


def check_paths(args: argparse.Namespace) -> tuple[list[Path], Path, Path]:
    """Validate the file arguments before any model is loaded → (images, output, model folder)."""
    if not args.image or not args.output:
        raise UserError("give --image IMAGE --output OUT.glb, or a batch: --input-dir DIR --output-dir OUT")
    images = [Path(p) for p in args.image]
    for image in images:
        if image.is_dir():
            raise UserError(f"input image {image} is a folder, not an image file; give one image (PNG, JPEG or WebP)")
        if not image.is_file():
            raise UserError(f"input image not found: {image}")
    if args.cameras and args.azimuths:
        raise UserError("give either --cameras or --azimuths, not both")
    if len(images) > 1 and not (args.cameras or args.azimuths):
        raise UserError(f"{len(images)} images need their cameras: --cameras transforms.json or --azimuths A,B,...")
    if args.azimuths and len(args.azimuths) != len(images):
        raise UserError(f"--azimuths has {len(args.azimuths)} values for {len(images)} images")
    output = check_output_path(args.output, (".glb",))
    if args.save_asset:
        check_output_path(args.save_asset, (".npz",), "--save_asset")
    if args.preview:
        check_output_path(output.with_suffix(".png"), (".png",), "preview")
    for path in extra_format_paths(output, parse_formats(args.format)):
        check_output_path(path, (), "output")
    return images, output, resolve_model(args.model)


def extra_format_paths(output: Path, formats: list[str]) -> list[Path]:
    """The files ``--format`` adds beside ``output`` (one-material GLB)."""
    from pixal3d.export.formats import planned_names

    return [output.with_name(name) for fmt in formats if fmt != "glb" for name in planned_names(fmt, output.stem)]


def parse_formats(values) -> list[str]:
    """``--format`` values → the formats to write (``glb`` first); :class:`UserError` for an unknown one."""
    from pixal3d.export.formats import parse_formats as parse

    return parse(values)


def write_result(result, output: Path, export, formats: list[str] = ("glb",), save_asset: str | Path | None = None,
                 preview: bool = False, progress=True) -> list[Path]:
    """Write a :class:`~pixal3d.pipelines.pixal3d.GenerationResult`: the GLB at ``output``, the other ``formats``
    beside it (:mod:`pixal3d.export.formats`), the asset and the input-view preview (``<output>.png``) when asked.
    They appear together or not at all (:func:`atomic_outputs`). Returns the files written."""
    from pixal3d.export.formats import format_files

    extra = extra_format_paths(output, list(formats))
    targets = [output] + extra + ([Path(save_asset)] if save_asset else []) + ([output.with_suffix(".png")] if preview else [])
    with atomic_outputs(targets) as tmps:
        result.save_glb(tmps[0], export, progress=progress)
        files = format_files(tmps[0], list(formats), output.stem)
        by_name = {path.name: tmp for path, tmp in zip(extra, tmps[1:])}
        if set(files) != set(by_name):  # a one-material GLB always gives the planned names
            raise RuntimeError(f"format files {sorted(files)} differ from the planned {sorted(by_name)}")
        for name, data in files.items():
            by_name[name].write_bytes(data)
        if save_asset:
            result.asset.save(tmps[1 + len(extra)])
        if preview:
            result.save_preview(tmps[-1], tmps[0])
    return targets


def resolve_model(name: str | None) -> Path:
    """The model folder ``--model`` names (default: the default model); :class:`UserError` when absent. The folder
    itself is checked when it is opened (:meth:`~pixal3d.pipelines.pixal3d.Pixal3DPipeline.open_folder`)."""
    from pixal3d.models.pipeline_folder import resolve_model_folder

    if name is None and not paths.component_path("pixal3d-small").exists():
        raise UserError(
            f"no model installed: put a model folder (pipeline.json + ckpts/) at {paths.component_path('pixal3d-small')}, "
            f"set ${paths.ENV_VAR}, or pass --model FOLDER (see README, 'Model folders')"
        )
    return resolve_model_folder(name)


def view_cameras(args: argparse.Namespace, pictures: list) -> list | None:
    """The world-frame cameras of a multi-view run (``--cameras`` or ``--azimuths``), or None for one image."""
    from pixal3d.core.camera import DEFAULT_FOV_X, distance_from_fov, orbit_cameras, read_transforms

    sizes = [p.size for p in pictures]
    if args.cameras:
        return read_transforms(args.cameras, sizes)
    if args.azimuths:
        fov = args.fov if args.fov is not None else DEFAULT_FOV_X
        return orbit_cameras(args.azimuths, args.elevation, fov, distance_from_fov(fov), *sizes[0])
    return None


def generation_options(args: argparse.Namespace):
    """:class:`~pixal3d.pipelines.pixal3d.GenerationOptions` from the parsed options (validated)."""
    from pixal3d.pipelines.pixal3d import GenerationOptions

    return GenerationOptions(seed=args.seed, fov=args.fov, steps=args.steps, guidance=args.guidance,
                             max_num_tokens=args.max_num_tokens, silhouette=args.silhouette).validate()


def run(args: argparse.Namespace) -> int:
    """Generate a GLB from ``args`` (see :func:`add_generation_arguments`).

    Everything that can be checked cheaply is checked before any model is loaded (options, device, paths,
    the images and cameras); the outputs (GLB, and the asset / preview when asked) appear together or not at all.
    """
    from pixal3d.devices import select_device

    export = export_options(args)
    options = generation_options(args)
    formats = parse_formats(args.format)
    if args.input_dir or args.output_dir:
        from pixal3d.cli.batch import run_batch

        return run_batch(args, export, options, formats)
    if args.shard:
        raise UserError("--shard is for batches (--input-dir DIR --output-dir OUT)")
    device = select_device(args.device)
    image_paths, output, model = check_paths(args)
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline, prepare_image

    folder = Pixal3DPipeline.open_folder(model)  # file headers only: a broken model folder fails in a moment
    if args.resolution:
        options.pipeline_type = folder.config.cascade_config.pipeline_type_for(args.resolution)
    # each image is loaded once, here: a bad image or camera fails before any model is loaded
    if args.cameras or args.azimuths:  # multi-view: the views are not cropped (their cameras stay exact)
        inputs = [prepare_image(p, crop=False, device=device) for p in image_paths]
        options.cameras = view_cameras(args, [view.image for view in inputs])
    else:
        inputs = prepare_image(image_paths[0], device=device)

    started = time.perf_counter()
    pipeline = Pixal3DPipeline.from_pretrained(folder, device=device, low_vram=args.low_vram, quantize=args.quantize)
    result = pipeline.generate(inputs, options)
    written = write_result(result, output, export, formats, args.save_asset, args.preview)
    print(result.summary(total_seconds=time.perf_counter() - started), file=sys.stderr)
    print(f"wrote {output}" + (f" (+ {', '.join(p.name for p in written[1:])})" if len(written) > 1 else ""))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="image → pixel-aligned textured GLB (same as inference.py)")
    add_generation_arguments(parser)
    parser.set_defaults(handler=run)


def main(argv: list[str] | None = None) -> int:
    """``python inference.py``: the upstream entry point with the same options as ``pixal3d generate``."""
    from pixal3d.cli import OneLineErrorParser, run_handler

    parser = OneLineErrorParser(prog="inference.py", description="Pixal3D: one image → one pixel-aligned PBR GLB.")
    add_generation_arguments(parser)
    return run_handler(run, parser.parse_args(argv))
