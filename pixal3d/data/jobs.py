"""What the data commands share: worker counts and writable output folders."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pixal3d.errors import UserError
from pixal3d.utils.files import atomic_output


def resolve_workers(workers: int | None) -> int:
    """``workers``, or all cores this process may use when ``None``; :class:`UserError` below 1."""
    if workers is None:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return workers


def ignore_interrupts() -> None:
    """Worker-process initializer: leave Ctrl-C to the parent (which stops the pool and reports one line),
    so workers do not each print a ``KeyboardInterrupt`` traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def writable_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that a file can be written in it; :class:`UserError` otherwise."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / ".write_test") as tmp:
            tmp.write_bytes(b"")
        (out / ".write_test").unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from exc
    return out
