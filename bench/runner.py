"""Shared benchmark runner: one markdown table row per benchmark function, each in a fresh process.

Benchmark scripts run as ``python bench/X.py`` and import this module as ``from runner import ...`` (it puts
the repository root on ``sys.path``); it also holds the shared timing and markdown-table helpers.

A benchmark module defines functions ``bench_xxx() -> dict`` returning ``{"name", "time_s", "note"}``
(plus any extra columns it declares) and calls :func:`main` with them. Each function runs in a
spawned process so its peak memory is its own: ``peak_mb`` is the growth of the process's maximum
resident set (``ru_maxrss``) over the benchmark, measured after importing torch.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def maxrss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _child(module: str, fn_name: str, queue) -> None:
    import torch  # noqa: F401  (imported before the memory baseline)

    fn = getattr(importlib.import_module(module), fn_name)
    base = maxrss_mb()
    row = fn()
    row.setdefault("peak_mb", maxrss_mb() - base)
    queue.put(row)


def run_row(fn: Callable[[], dict]) -> dict:
    """Run one benchmark function in a fresh process and return its row (``failed`` note on a crash)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn.__module__, fn.__name__, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or queue.empty():
        return {"name": fn.__name__, "time_s": float("nan"), "peak_mb": float("nan"), "note": f"failed (exit {proc.exitcode})"}
    return queue.get()


#: the default value columns of :func:`main`: (row key, header, format)
DEFAULT_COLUMNS: tuple[tuple[str, str, str], ...] = (("time_s", "time (s)", "{:.3f}"), ("peak_mb", "peak memory (MB)", "{:.0f}"))


def table_header(headers: Sequence[str], align: str | None = None) -> str:
    """The header and separator lines of a markdown table; ``align``: one letter per column, ``l`` or ``r``
    (right-aligned, ``---:``); default all ``l``."""
    align = align or "l" * len(headers)
    if len(align) != len(headers):
        raise ValueError(f"{len(headers)} headers but alignment {align!r}")
    return "| " + " | ".join(headers) + " |\n" + "".join("|---:" if a == "r" else "|---" for a in align) + "|"


def table_row(cells: Sequence[object]) -> str:
    """One markdown table row of the cells (``str`` of each)."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(benchmarks: Sequence[Callable[[], dict]], argv: list[str] | None = None,
         columns: Sequence[tuple[str, str, str]] = DEFAULT_COLUMNS, spawn: bool = True) -> None:
    """Print a markdown table with one row per benchmark (all, or those whose function names are in ``argv``).

    ``columns``: (row key, header, format) of the value columns between the name and the notes; a value that
    is not a number is printed as is. ``spawn=False`` runs the rows in this process (no ``peak_mb``), for
    rows that depend on settings made in this process.
    """
    names = set(argv if argv is not None else sys.argv[1:])
    print(table_header(["benchmark", *(h for _, h, _ in columns), "notes"]))
    for fn in benchmarks:
        if names and fn.__name__ not in names:
            continue
        row = run_row(fn) if spawn else fn()
        values = [fmt.format(row[key]) if isinstance(row.get(key), (int, float)) else str(row.get(key, "")) for key, _, fmt in columns]
        print(table_row([row["name"], *values, row.get("note", "")]), flush=True)
