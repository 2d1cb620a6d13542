"""``pixal3d generate --input-dir DIR --output-dir OUT [--shard I/N]``: every image of a folder, one GLB each.

Resumable: an image whose outputs all exist is skipped (outputs are written atomically, so an existing file is a
finished one). One image that fails is recorded — its one-line error in the summary — and the batch goes on; the
exit code is 2 when any image failed, 130 after Ctrl-C (finished images are kept). The model is loaded once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pixal3d.errors import UserError, describe

#: file suffixes a batch picks up (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass
class Item:
    """One image of a batch and what became of it (``done`` | ``skipped`` | ``failed``)."""

    image: str
    output: str
    status: str = "pending"
    seconds: float = 0.0
    message: str = ""


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (hidden files ignored)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".")), key=lambda p: p.name)


def output_names(images: list[Path]) -> dict[Path, str]:
    """Output stem per image: the image's stem, or ``<stem>_<suffix>`` when two images share a stem."""
    stems: dict[str, int] = {}
    for image in images:
        stems[image.stem.lower()] = stems.get(image.stem.lower(), 0) + 1
    return {image: image.stem if stems[image.stem.lower()] == 1 else f"{image.stem}_{image.suffix.lstrip('.').lower()}"
            for image in images}


def summary_table(items: list[Item]) -> str:
    """A fixed-width table of the batch: image, status, seconds, message."""
    width = max([len("image")] + [len(Path(i.image).name) for i in items])
    lines = [f"{'image':<{width}}  {'status':<8}{'seconds':>9}  message"]
    for i in items:
        lines.append(f"{Path(i.image).name:<{width}}  {i.status:<8}{i.seconds:>9.1f}  {i.message}")
    counts = {s: sum(i.status == s for i in items) for s in ("done", "skipped", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(items)}")
    return "\n".join(lines)


def run_batch(args, export, options, formats: list[str]) -> int:
    """Handler of the batch mode of ``pixal3d generate`` (see the module docstring)."""
    from tqdm.auto import tqdm

    from pixal3d.cli.generate import check_output_path, resolve_model, write_result
    from pixal3d.devices import select_device
    from pixal3d.export.formats import planned_names
    from pixal3d.pipelines.pixal3d import Pixal3DPipeline, prepare_image
    from pixal3d.utils.files import write_json

    if not (args.input_dir and args.output_dir):
        raise UserError("a batch needs both --input-dir DIR and --output-dir OUT")
    if args.image or args.output:
        raise UserError("give either --image/--output or --input-dir/--output-dir, not both")
    if args.cameras or args.azimuths:
        raise UserError("--cameras/--azimuths are for one multi-view object (--image …), not for a batch")
    if args.save_asset:
        raise UserError("--save_asset names one file; it is not available for a batch")
    in_dir, out_dir = Path(args.input_dir), Path(args.output_dir)
    if not in_dir.is_dir():
        raise UserError(f"--input-dir {in_dir} is not a folder" if in_dir.exists() else f"--input-dir {in_dir} not found")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output-dir {out_dir} is a file, not a folder")
    if out_dir.exists() and out_dir.resolve() == in_dir.resolve():
        raise UserError("--output-dir must differ from --input-dir (previews would replace the inputs)")
    check_output_path(out_dir / "summary.json", (".json",), "--output-dir")
    images = list_images(in_dir)
    if not images:
        raise UserError(f"no images in {in_dir} (looked for {', '.join(IMAGE_SUFFIXES)})")
    index, count = args.shard or (1, 1)
    names = output_names(images)
    mine = images[index - 1::count]
    device = select_device(args.device)
    model = resolve_model(args.model)
    folder = Pixal3DPipeline.open_folder(model)
    if args.resolution:
        options.pipeline_type = folder.config.cascade_config.pipeline_type_for(args.resolution)

    def targets(image: Path) -> list[Path]:
        stem = names[image]
        files = [out_dir / n for fmt in formats for n in planned_names(fmt, stem)]
        return files + ([out_dir / f"{stem}.png"] if args.preview else [])

    items = [Item(str(image), str(out_dir / f"{names[image]}.glb")) for image in mine]
    todo = []
    for item, image in zip(items, mine):
        if all(p.is_file() for p in targets(image)):
            item.status, item.message = "skipped", "outputs exist"
        else:
            todo.append((item, image))
    suffix = f".shard-{index}-of-{count}" if args.shard else ""
    print(f"batch: {len(mine)} images{f' (shard {index}/{count} of {len(images)})' if args.shard else ''}, "
          f"{len(mine) - len(todo)} already done", file=sys.stderr)
    pipeline = Pixal3DPipeline.from_pretrained(folder, device=device, low_vram=args.low_vram) if todo else None
    bar = tqdm(todo, desc="batch", unit="image")
    try:
        for item, image in bar:
            bar.set_postfix_str(image.name)
            started = time.perf_counter()
            try:
                result = pipeline.generate(prepare_image(image, device=device), options, progress=False)
                write_result(result, Path(item.output), export, formats, preview=args.preview, progress=False)
                item.status = "done"
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 — recorded in the summary; the batch goes on
                item.status, item.message = "failed", describe(exc)[1]
            item.seconds = time.perf_counter() - started
    finally:
        bar.close()
        if any(i.status != "pending" for i in items):
            write_json(out_dir / f"summary{suffix}.json", {"shard": [index, count], "items": [asdict(i) for i in items]})
    print(summary_table(items), file=sys.stderr)
    failed = [i for i in items if i.status == "failed"]
    if failed:
        print(f"error: {len(failed)} of {len(items)} images failed (see the table above and "
              f"{out_dir / f'summary{suffix}.json'})", file=sys.stderr)
        return 2
    print(f"wrote {out_dir} ({sum(i.status == 'done' for i in items)} new, "
          f"{sum(i.status == 'skipped' for i in items)} skipped)")
    return 0
