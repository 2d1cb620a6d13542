"""File helpers: outputs appear whole or not at all.

Every output of every command goes through :func:`atomic_output` (or :func:`atomic_outputs` for a
command that writes several files): the data is written to a hidden temporary file beside the target
and renamed onto it only when complete, so a full disk, a crash, Ctrl-C or SIGKILL never leaves a
half-written file under the target's name (a killed process may leave a hidden ``.name.*`` temporary,
which :func:`remove_stale_temporaries` clears on the next run). :func:`check_output_path` validates an
output path up front, before any expensive work.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Iterator

from pixal3d.errors import UserError
from pixal3d.utils.failpoints import failpoint


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the process umask, read once at import (``os.umask`` is process-wide: reading it later, while other threads
#: create files, could give those files the wrong mode)
_UMASK = _read_umask()


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing[::-1]


def temporary_prefix(path: str | os.PathLike) -> str:
    """The name prefix of :func:`atomic_output`'s temporaries for ``path`` (``.<stem>.``)."""
    return f".{Path(path).stem}."


@contextlib.contextmanager
def atomic_outputs(paths: Iterable[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths``; on success all are renamed onto their targets.

    If the body raises (or is interrupted), every temporary is removed, folders created for them are
    removed again, and the targets are left untouched — a failed run never leaves a half-written or a
    partial set of outputs. Temporary names keep the target's suffix so writers that choose a format
    by extension (trimesh, PIL, numpy) still work. Files get the usual ``0666 & ~umask`` mode.
    """
    targets = [Path(p) for p in paths]
    created: list[Path] = []
    temporaries: list[Path] = []
    try:
        for target in targets:
            for folder in _missing_parents(target):
                try:
                    folder.mkdir()
                except FileExistsError:  # made by another process meanwhile: not ours to remove
                    continue
                created.append(folder)
            fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=target.suffix, dir=target.parent)
            os.close(fd)
            temporaries.append(Path(tmp))
            os.chmod(tmp, 0o666 & ~_UMASK)
        try:
            yield list(temporaries)
        except OSError as exc:  # e.g. a full disk inside a writer: name the output, not a temporary
            if exc.filename is None or exc.filename in {str(t) for t in temporaries}:
                exc.filename = str(targets[0]) if len(targets) == 1 else ", ".join(map(str, targets))
            raise
        failpoint("output.commit")
        for tmp, target in zip(temporaries, targets):
            os.replace(tmp, target)
        created.clear()
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched, so a failed
    run never leaves a half-written output (see :func:`atomic_outputs`).
    """
    with atomic_outputs([path]) as (tmp,):
        yield tmp


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove temporaries of :func:`atomic_output` for ``path`` left by a killed process."""
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(f"{temporary_prefix(path)}*{path.suffix}"):
            if len(stale.name) > len(temporary_prefix(path)) + len(path.suffix):
                with contextlib.suppress(OSError):
                    stale.unlink()


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] = (), what: str = "output") -> Path:
    """Validate an output file path before any work: suffix, not a folder, and a place we can write.

    The nearest existing ancestor must be a folder in which a file can be created (probed with a
    temporary file that is removed at once, so this works for root and read-only file systems too).
    Nothing is left behind. :class:`UserError` naming the problem otherwise.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{what} must be a {' or '.join(suffixes)} file, got {path}")
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name such as {path / ('out' + (suffixes[0] if suffixes else ''))}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".pixal3d-write-test.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror or exc} in {parent}; "
                        f"choose a folder you can write to") from exc
    return path


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse the JSON file ``path``; :class:`UserError` naming ``what`` if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from exc


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent) + "\n")
