"""Errors that reach the user as one line, and the one error path every entry point shares.

Every command (``pixal3d …``, ``inference.py``, ``train.py``) and the app's request handler turn an
exception into one line with :func:`describe`:

* :class:`UserError` (bad input or a missing resource the user can fix) → exit code 2;
* an :class:`OSError` from the environment (disk full, file too large, permission denied, read-only
  file system …) → exit code 2, naming the file and what to do;
* out of memory (host or accelerator) → exit code 2, with what to lower;
* ``KeyboardInterrupt`` (Ctrl-C, SIGINT) → exit code 130;
* anything else is a bug → exit code 1, one line naming the exception (``PIXAL3D_DEBUG=1`` adds the traceback).

Outputs are written atomically (:mod:`pixal3d.utils.files`), so none of these leaves a partial file.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from collections.abc import Callable

#: exit codes of every entry point
EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130

#: set to 1 to also print the traceback of an unexpected error
DEBUG_ENV = "PIXAL3D_DEBUG"

#: messages for library code that are worth a line but are not errors (e.g. "using the first frame")
log = logging.getLogger("pixal3d")


class UserError(Exception):
    """Bad input or a missing resource the user can fix: shown as one line, never a traceback."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _os_error_line(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    where = f" {name}" if name else ""
    reason = exc.strerror or _first_line(exc) or type(exc).__name__
    if exc.errno in _DISK_FULL:
        return (f"cannot write{where}: {reason}; free some disk space (or raise the file size limit) "
                f"and run again — nothing partial was kept")
    if exc.errno in _NOT_ALLOWED:
        return f"cannot write{where}: {reason}; choose a folder you can write to"
    if exc.errno == errno.EISDIR:
        return f"{name or 'the path'} is a folder; give a file name"
    if exc.errno == errno.ENOTDIR:
        return f"{name or 'the path'}: a part of the path is a file, not a folder"
    return f"{name + ': ' if name else ''}{reason}"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def describe(exc: BaseException) -> tuple[int, str]:
    """``(exit code, one line)`` for an exception that ended a command (see the module docstring)."""
    if isinstance(exc, UserError):
        return EXIT_USER, _first_line(exc) or "failed"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, ("interrupted; nothing partial was written — run the same command again "
                                  "(training and data builds resume where they stopped)")
    if _is_out_of_memory(exc):
        return EXIT_USER, ("out of memory; try --low_vram, a lower --resolution or --texture_size, or a "
                           "machine with more memory")
    if isinstance(exc, OSError) and exc.errno is not None:
        return EXIT_USER, _os_error_line(exc)
    detail = _first_line(exc)
    return EXIT_BUG, (f"internal error: {type(exc).__name__}{': ' + detail if detail else ''} "
                      f"(a bug; set {DEBUG_ENV}=1 for the traceback and report it)")


def report(exc: BaseException, file=None) -> int:
    """Print the one line of :func:`describe` (``error: …``) on stderr and return the exit code."""
    file = file if file is not None else sys.stderr
    code, line = describe(exc)
    if code == EXIT_BUG and os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=file)
    print(f"error: {line}", file=file, flush=True)
    return code


def run_guarded(func: Callable[..., int | None], *args, **kwargs) -> int:
    """Call ``func`` and return its exit code; any exception becomes one line on stderr (:func:`report`)."""
    _setup_notes()
    try:
        return int(func(*args, **kwargs) or 0)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 — this is the one place every failure ends
        return report(exc)


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr, flush=True)


def _setup_notes() -> None:
    """Show ``pixal3d`` log records of level INFO and above as ``note: …`` lines on stderr (once)."""
    if not any(isinstance(h, _NoteHandler) for h in log.handlers):
        log.addHandler(_NoteHandler())
        log.setLevel(logging.INFO)
        log.propagate = False
