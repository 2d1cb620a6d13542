"""Export-path benchmarks: ``python bench/export.py`` prints a markdown table.

``BENCHMARKS`` is a list of row functions; each returns a list of dicts (one per table row) with the
columns ``case`` and ``seconds`` plus any per-stage detail. Engineers add their own row functions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pixal3d.mesh.io import load_mesh  # noqa: E402
from pixal3d.mesh.voxelize import voxelize  # noqa: E402
from tests.helpers import EVALSETS  # noqa: E402


def voxelize_rows() -> list[dict]:
    """Mesh → O-Voxel at R = 256 and 512 for a scan (OBJ) and a textured GLB, with stage times."""
    rows = []
    for name in ("stanford_bunny.obj", "keenan_spot.glb"):
        for res in (256, 512):
            t0 = time.perf_counter()
            mesh = load_mesh(EVALSETS / "meshes" / name)
            load_s = time.perf_counter() - t0
            asset, stages = voxelize(mesh, res)
            total = time.perf_counter() - t0
            detail = ", ".join(f"{k} {v:.2f}" for k, v in {"load": load_s, **stages}.items())
            rows.append({"case": f"voxelize {name} R={res}", "seconds": total,
                         "detail": f"{len(asset.coords)} voxels; {detail}"})
    return rows


BENCHMARKS = [voxelize_rows]


def print_table(rows: list[dict]) -> None:
    """Print rows as a markdown table (columns: case, seconds, detail)."""
    print("| case | seconds | detail |")
    print("|---|---:|---|")
    for row in rows:
        print(f"| {row['case']} | {row['seconds']:.2f} | {row.get('detail', '')} |")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)
    selected = sys.argv[1:]
    results = []
    for bench in BENCHMARKS:
        if not selected or bench.__name__ in selected:
            results.extend(bench())
    print_table(results)
