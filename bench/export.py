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


def export_rows() -> list[dict]:
    """keenan_spot voxelized at R = 256 (with an input camera) → GLB with a 200k-face budget and 2048²
    textures: per-stage seconds (the bake split into rasterise / snap / lookup), plus the exported model's
    4-view PSNR against the source (goal ≥ 25 dB) and its silhouette IoU through the stored camera."""
    import math
    from unittest import mock

    import numpy as np
    import trimesh

    from pixal3d.core.camera import Camera
    from pixal3d.core.render import glb_camera, load_render_meshes, render, turntable_cameras
    from pixal3d.export import glb
    from pixal3d.export.bake import bake
    from pixal3d.export.glb import ExportOptions, asset_to_glb

    src = EVALSETS / "meshes" / "keenan_spot.glb"
    mesh = load_mesh(src)
    fov = math.radians(40.0)
    asset, _ = voxelize(mesh, 256, camera=Camera.front(fov, 1.0 / (2.0 * math.tan(fov / 2.0)), 1.0))
    out = REPO / "outputs" / "bench_spot_r256.glb"
    bake_steps: dict[str, float] = {}

    def timed_bake(*args, **kwargs):  # records the bake's own split (rasterize / snap / lookup)
        textures = bake(*args, **kwargs)
        bake_steps.update(textures.timings)
        return textures

    t0 = time.perf_counter()
    with mock.patch.object(glb, "bake", timed_bake):
        result = asset_to_glb(asset, out, ExportOptions(texture_size=2048, decimation_target=200_000), progress=False)
    total = time.perf_counter() - t0
    source = load_render_meshes(src)
    for m in source:
        m.vertices = trimesh.transform_points(m.vertices, mesh.transform)
    exported = load_render_meshes(out)
    psnrs = []
    for cam in turntable_cameras(source, 4):
        a, b = render(source, cam, 512)[..., :3], render(exported, cam, 512)[..., :3]
        psnrs.append(10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12)))
    cam = glb_camera(out)
    ma, mb = render(source, cam, 512, "mask"), render(exported, cam, 512, "mask")
    iou = float((ma & mb).sum() / (ma | mb).sum())
    split = ", ".join(f"{k} {bake_steps[k]:.2f}" for k in ("rasterize", "snap", "lookup"))
    stages = ", ".join(f"{k} {v:.2f}" + (f" ({split})" if k == "bake" else "") for k, v in result.timings.items())
    return [{"case": "export spot R=256 → 200k faces, 2048² textures", "seconds": total,
             "detail": f"{result.faces} faces; {stages}; PSNR 4 views {min(psnrs):.1f}–{max(psnrs):.1f} dB "
                       f"(mean {np.mean(psnrs):.1f}); input-camera IoU {iou:.4f}"}]


BENCHMARKS = [voxelize_rows, export_rows]


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
