"""The one error path (:func:`pixal3d.errors.describe` / :func:`run_guarded`): every kind of failure → one line
and its exit code; and the atomic-output helpers it relies on."""

from __future__ import annotations

import contextlib
import errno
import io
import os

import pytest
import torch

from pixal3d.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_USER, UserError, describe, run_guarded
from pixal3d.utils.files import atomic_outputs, check_output_path


@pytest.mark.parametrize("exc, code, fragment", [
    (UserError("bad input\nsecond line"), EXIT_USER, "bad input"),
    (OSError(errno.ENOSPC, "No space left on device", "/x/out.glb"), EXIT_USER, "/x/out.glb: No space left on device; free"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/x/a"), EXIT_USER, "free some disk space"),
    (OSError(errno.EACCES, "Permission denied", "/x"), EXIT_USER, "choose a folder you can write to"),
    (OSError(errno.EROFS, "Read-only file system", "/x"), EXIT_USER, "choose a folder you can write to"),
    (MemoryError(), EXIT_USER, "out of memory; try --low_vram"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), EXIT_USER, "out of memory"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted"),
    (ZeroDivisionError("division by zero"), EXIT_BUG, "internal error: ZeroDivisionError: division by zero (a bug"),
])
def test_describe(exc, code, fragment):
    got_code, line = describe(exc)
    assert got_code == code and fragment in line and "\n" not in line


def test_run_guarded_prints_one_line_and_debug_adds_the_traceback(monkeypatch):
    def boom():
        raise RuntimeError("kaput\nmore")

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_guarded(boom) == EXIT_BUG
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("error: internal error: RuntimeError: kaput")
    monkeypatch.setenv("PIXAL3D_DEBUG", "1")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run_guarded(boom)
    assert "Traceback" in err.getvalue() and err.getvalue().splitlines()[-1].startswith("error: ")


def test_atomic_outputs_all_or_nothing(tmp_path):
    a, b = tmp_path / "new" / "deep" / "a.glb", tmp_path / "new" / "b.npz"
    with pytest.raises(OSError) as info:
        with atomic_outputs([a, b]) as (ta, tb):
            ta.write_bytes(b"glb")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(a) in info.value.filename  # names the outputs, not a temporary
    assert list(tmp_path.iterdir()) == []  # temporaries and the folders made for them are gone
    with atomic_outputs([a, b]) as (ta, tb):
        ta.write_bytes(b"glb")
        tb.write_bytes(b"npz")
    assert a.read_bytes() == b"glb" and b.read_bytes() == b"npz"
    mask = os.umask(0)
    os.umask(mask)
    assert a.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "x" / "y" / "o.glb", (".glb",)) == tmp_path / "x" / "y" / "o.glb"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing
    with pytest.raises(UserError, match="must be a .glb"):
        check_output_path(tmp_path / "o.obj", (".glb",))
    (tmp_path / "d.glb").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        check_output_path(tmp_path / "d.glb", (".glb",))
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f" / "o.glb", (".glb",))
