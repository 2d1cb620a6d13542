"""Runs every case of the bad-input corpus (:mod:`tests.reliability.cases`).

Each case must end with its exit code, exactly one line on stderr (``error: …`` matching the case's
regex; for a success that has something to say, one ``note: …`` line), no traceback, and every file
under its folder and the shared inputs exactly as before (hashed before and after) except the ones it
lists in ``writes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import resource
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.cases import CASES, Case, Ctx

REPO = Path(__file__).resolve().parents[2]
#: the one line: ``error: …`` (or ``<prog>: error: …`` for a usage error), ``note: …`` for a success
ERROR = re.compile(r"^(?:[\w./-]+(?: [\w-]+)?: )?error: \S")
NOTE = re.compile(r"^note: \S")
#: a tqdm progress-bar line
PROGRESS = re.compile(r"\d+/\d+ \[|^\s*$")
ENTRY_SCRIPTS = {"inference": [str(REPO / "inference.py")], "train": [str(REPO / "train.py")],
                 "pixal3d": ["-m", "pixal3d"]}


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (hidden ones too) → its SHA-256."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _limit_fsize(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run_subprocess(case: Case, argv: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **case.env}
    proc = subprocess.run([sys.executable, *ENTRY_SCRIPTS[case.entry], *argv], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300,
                          preexec_fn=_limit_fsize(case.fsize_limit) if case.fsize_limit else None)
    return proc.returncode, proc.stderr


def run_in_process(case: Case, ctx: Ctx) -> tuple[int, str]:
    from pixal3d.cli import main
    from pixal3d.errors import run_guarded

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        if case.entry == "cli":
            try:
                code = main(case.args(ctx))
            except SystemExit as exc:  # argparse usage errors
                code = exc.code
        else:  # api / app: a Python call, through the shared error path
            messages = []

            def call():
                try:
                    case.args(ctx)
                except Exception as exc:
                    messages.append(str(exc))
                    raise

            code = run_guarded(call)
            assert all("\n" not in m for m in messages), f"multi-line exception message: {messages}"
    return int(code), err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, tmp_path, shared_inputs, request, one_thread):
    ctx = Ctx(tmp_path / "case", shared_inputs, data=lambda: request.getfixturevalue("tiny_data"))
    ctx.tmp.mkdir()
    if case.entry == "train":
        ctx.data()  # built before the snapshot: it is a shared input, not an output of the case
    try:
        if case.setup:
            case.setup(ctx)
        argv = case.args(ctx) if case.entry in ENTRY_SCRIPTS else None
        before = snapshot(ctx.tmp, shared_inputs["root"])
        if argv is not None:
            code, stderr = run_subprocess(case, [str(a) for a in argv], ctx.tmp)
        else:
            code, stderr = run_in_process(case, ctx)
        after = snapshot(ctx.tmp, shared_inputs["root"])
    finally:
        for cleanup in ctx.cleanups:
            cleanup()

    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == case.code, f"exit code {code}, expected {case.code}; stderr:\n{stderr}"
    if case.after_progress:  # fails only at the end of a generation: its progress bars come first
        assert all(PROGRESS.search(line) for line in lines[:-1]), stderr
        lines = lines[-1:]
    if case.code == 0 and not case.message:
        assert lines == [], stderr
    else:
        assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{stderr}"
        prefix = NOTE if case.code == 0 else ERROR
        assert prefix.match(lines[0]) and re.search(case.message, lines[0]), lines[0]
    allowed = {str(ctx.tmp / w) for w in case.writes}
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p) and p not in allowed)
    assert not changed, f"files created, changed or removed: {changed}"
    for w in case.writes:
        assert (ctx.tmp / w).is_file(), f"{w} was not written"
    if case.check:
        case.check(ctx)


def test_corpus_covers_every_category_and_entry_point():
    counts = Counter(c.category for c in CASES)
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert {"images", "models", "parameters", "outputs", "meshes", "training"} <= set(counts)
    entries = {c.entry for c in CASES}
    assert {"cli", "inference", "train", "pixal3d", "api", "app"} <= entries
