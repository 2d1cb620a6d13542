"""``pixal3d inspect``: what a model folder (or one checkpoint) holds, and whether it fits its model classes.

Reads only JSON files and safetensors headers — never tensor data — so it is fast even for multi-GB
checkpoints. Every checkpoint is checked strictly against its class built on the meta device (key
sets and shapes). Exit code 0 when everything the pipeline needs is present and fits; 2 (with the
first mismatches on stderr) when a checkpoint does not fit its class or a file is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixal3d.errors import UserError
from pixal3d.models.loading import Checkpoint, check_checkpoint, checkpoint_files, checkpoint_stem, open_checkpoint
from pixal3d.models.pipeline_folder import (
    PIPELINE_FILE,
    STAGE_CLASSES,
    PipelineFolder,
    is_pipeline_folder,
    open_pipeline_folder,
    resolve_model_folder,
)

_SHORT_DTYPES = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}


@dataclass
class Row:
    """One inspected checkpoint: a table row plus what went wrong (``problem``) or is merely noted (``note``)."""

    label: str
    stem: Path | None
    class_name: str = "-"
    params: str = "-"
    dtypes: str = "-"
    status: str = "ok"
    problem: str = ""
    note: str = ""


def human_count(n: int) -> str:
    """``1339411976`` → ``'1.34B'``; ``73671201`` → ``'73.7M'``."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def dtype_summary(checkpoint: Checkpoint) -> str:
    """Stored dtypes with their share of the scalars, e.g. ``'bf16 96%, fp32 4%'``."""
    counts = checkpoint.dtype_counts()
    total = sum(counts.values()) or 1
    def share(v: int) -> str:
        pct = 100 * v / total
        return "<1%" if 0 < pct < 1 else f"{pct:.0f}%"

    return ", ".join(f"{_SHORT_DTYPES.get(k, k.lower())} {share(v)}" for k, v in counts.items())


def inspect_checkpoint(label: str, stem: Path, required: bool = True) -> Row:
    """Check one checkpoint (header only). ``required``: an unknown class is a problem, not just a note."""
    row = Row(label, stem)
    try:
        checkpoint = open_checkpoint(stem)
    except UserError as exc:
        row.status, row.problem = "unreadable", str(exc)
        return row
    row.class_name = checkpoint.name
    row.params = human_count(checkpoint.num_params)
    row.dtypes = dtype_summary(checkpoint)
    try:
        _, mismatches = check_checkpoint(checkpoint)
    except UserError as exc:
        if required or not str(exc).startswith("unknown model class"):
            row.status, row.problem = "cannot build", str(exc)
        else:
            row.status, row.note = "not implemented", f"class {checkpoint.name} is not implemented here (not used by image → 3D)"
        return row
    if not mismatches.ok:
        row.status = "MISMATCH"
        row.problem = f"{checkpoint.weights_path} does not fit {checkpoint.name}: {mismatches.summary()}"
    return row


def folder_rows(folder: PipelineFolder) -> list[Row]:
    """One row per stage of ``folder``."""
    rows = []
    for key, stage in folder.stages.items():
        required = stage.source == PIPELINE_FILE
        if not stage.found:
            row = Row(key, None, status="missing")
            if required:
                row.problem = stage.missing_message()
            else:  # stages only the texturing pipeline uses are not needed for image → 3D
                row.note = f"listed in {stage.source}; {stage.missing_message()}"
            rows.append(row)
            continue
        row = inspect_checkpoint(key, stage.stem, required)
        expected = STAGE_CLASSES.get(key)
        if row.status == "ok" and expected and row.class_name not in expected:
            row.status = "WRONG STAGE"
            row.problem = (f"{key} holds a {row.class_name} checkpoint, but this stage holds a {' or '.join(expected)}: "
                           f"it is another stage's checkpoint")
        if stage.source != PIPELINE_FILE:
            row.note = "; ".join(filter(None, [f"listed in {stage.source}", row.note]))
        rows.append(row)
    return rows


def _relative(path: Path | None, base: Path) -> str:
    if path is None:
        return "-"
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def format_table(rows: list[Row], base: Path) -> list[str]:
    """Aligned text table of ``rows`` (paths relative to ``base`` where possible)."""
    header = ("stage", "class", "params", "dtypes", "status", "checkpoint")
    cells = [header] + [(r.label, r.class_name, r.params, r.dtypes, r.status, _relative(r.stem, base)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + "  " + c[-1] for c in cells]


def settings_lines(folder: PipelineFolder) -> list[str]:
    """The pipeline settings of ``folder`` in a few lines."""
    lines = [f"pipeline: {folder.config.name or '-'}  default_pipeline_type: {folder.config.default_pipeline_type or '-'}"]
    for stage, sampler in folder.config.samplers.items():
        params = ", ".join(f"{k}={v}" for k, v in (sampler.get("params") or {}).items())
        lines.append(f"sampler {stage}: {sampler.get('name', '-')} {sampler.get('args') or {}} {params}".rstrip())
    for kind, entry in folder.config.normalization.items():
        lines.append(f"normalization {kind}: {len(entry.get('mean', []))} channels")
    for label, spec in (("image_encoder", folder.config.image_encoder), ("image_cond_model", folder.config.image_cond_model),
                        ("rembg_model", folder.config.rembg_model)):
        if spec is not None:
            lines.append(f"{label}: {spec.get('name', '-') if isinstance(spec, dict) else spec} "
                         f"{spec.get('args', {}) if isinstance(spec, dict) else ''}".rstrip())
    return lines


def _checkpoints_in(directory: Path) -> list[Path]:
    return sorted(p.with_suffix("") for p in directory.glob("*.json") if checkpoint_files(p)[1].is_file())


def inspect_target(target: str) -> tuple[list[str], list[str]]:
    """``(report lines, problems)`` for a model folder, a folder of checkpoints, or one checkpoint."""
    path = Path(target).expanduser()
    stem = checkpoint_stem(path)
    json_path, weights_path = checkpoint_files(stem)
    if not path.is_dir() and (json_path.is_file() or weights_path.is_file()):
        rows = [inspect_checkpoint(stem.name, stem)]
        base = stem.parent
        lines = [f"checkpoint: {stem}"]
    else:
        folder_path = path if path.is_dir() else resolve_model_folder(target)
        if is_pipeline_folder(folder_path):
            folder = open_pipeline_folder(folder_path)
            rows = folder_rows(folder)
            base = folder.path
            lines = [f"model folder: {folder.path}"] + settings_lines(folder)
        else:
            stems = _checkpoints_in(folder_path)
            if not stems:
                raise UserError(f"{folder_path} holds neither {PIPELINE_FILE} nor checkpoints (*.json + *.safetensors)")
            rows = [inspect_checkpoint(s.name, s) for s in stems]
            base = folder_path
            lines = [f"checkpoint folder: {folder_path}"]
    lines += format_table(rows, base)
    lines += [f"note: {r.label}: {r.note}" for r in rows if r.note]
    problems = [r.problem if r.problem.startswith(r.label) else f"{r.label}: {r.problem}" for r in rows if r.problem]
    return lines, problems


def run(args) -> int:
    lines, problems = inspect_target(args.target)
    print("\n".join(lines))
    if problems:
        more = f" (+{len(problems) - 1} more problem(s) listed above)" if len(problems) > 1 else ""
        for problem in problems:
            print(f"problem: {problem}")
        raise UserError(problems[0] + more)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="list a model folder's stages and check every checkpoint against its class (headers only)")
    parser.add_argument("target", metavar="FOLDER",
                        help="model folder (pipeline.json + ckpts/), its name under $PIXAL3D_MODELS, "
                             "a folder of checkpoints, or one checkpoint stem / .json / .safetensors")
    parser.set_defaults(handler=run)
