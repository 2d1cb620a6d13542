"""Procedural textured training assets: seeded recipes → GLB files, a manifest and a contact sheet.

Asset ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i, attempt])`` alone, so it is
the same whatever the number of assets or workers; ``attempt`` only moves past the rare recipe whose
solid comes out empty or degenerate. A recipe (JSON) fully determines the asset:

* a *category* (primitive, boolean, extrusion, revolution, thin, holed, assembly) and *kind*,
* *parts* (one mesh each in the GLB scene), each a shape node (:mod:`pixal3d.data.shapes`), a
  material slot and a UV projection,
* *materials* (:mod:`pixal3d.data.materials`),
* an asset transform: ``rotation`` (3x3) · ``diag(scale)``, then centring and a uniform scale so the
  longest side of the bounding box is ``longest_side`` (0.9–1.0) inside ``[-0.5, 0.5]³``.

Output frame: glTF, +Y up, the object's front facing +Z.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import trimesh

from pixal3d.data import materials as mats
from pixal3d.data.recipes import CATEGORIES
from pixal3d.data.shapes import EmptySolid, build_node, node_kinds, random_rotation
from pixal3d.data.jobs import ignore_interrupts, resolve_workers, writable_folder
from pixal3d.core.glb import read_glb_json
from pixal3d.errors import UserError
from pixal3d.utils.failpoints import failpoint
from pixal3d.utils.files import atomic_output, remove_stale_temporaries, write_json

#: bump when a change alters what a recipe or a GLB looks like for the same (seed, index)
GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
CONTACT_SHEET = "contact_sheet.png"
#: assets shown on the contact sheet at most (the first ones)
SHEET_MAX = 256
#: contact-sheet tile side, pixels
SHEET_TILE = 128
#: corners whose face normal is within this angle of the smooth vertex normal share it
SMOOTH_ANGLE_DEG = 35.0
MAX_ATTEMPTS = 8


def asset_name(seed: int, index: int) -> str:
    """File name of asset ``index`` of ``seed``: ``synth_{seed:04d}_{index:06d}.glb``."""
    return f"synth_{seed:04d}_{index:06d}.glb"


# --------------------------------------------------------------------------------------------------
# recipes


def sample_recipe(seed: int, index: int, attempt: int = 0) -> dict[str, Any]:
    """The JSON recipe of asset ``index`` of ``seed`` (``attempt`` > 0 only after a degenerate build)."""
    rng = np.random.default_rng([seed, index, attempt])
    names = list(CATEGORIES)
    probs = np.array([CATEGORIES[n][1] for n in names])
    category = str(rng.choice(names, p=probs / probs.sum()))
    kind, parts, n_materials = CATEGORIES[category][0](rng)
    materials = []
    for slot in range(n_materials):
        sheet = any(p["material"] == slot and not p["watertight"] for p in parts)
        materials.append(mats.sample_material(rng, double_sided=sheet))
    r = rng.random()
    if r < 0.6:  # turned about the up axis only
        yaw = rng.uniform(0, 2 * np.pi)
        rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    elif r < 0.85:  # turned and tilted by up to 30°
        yaw, tilt, axis = rng.uniform(0, 2 * np.pi), rng.uniform(-np.pi / 6, np.pi / 6), rng.uniform(0, 2 * np.pi)
        tilt_rot = trimesh.transformations.rotation_matrix(tilt, [np.cos(axis), 0, np.sin(axis)])[:3, :3]
        rotation = tilt_rot @ np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    else:
        rotation = random_rotation(rng)
    spread = 0.25 if category == "assembly" else 0.5
    scale = rng.uniform(1 - spread / 2, 1 + spread, size=3)
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "index": index,
        "attempt": attempt,
        "category": category,
        "kind": kind,
        "shape_kinds": sorted({k for p in parts for k in node_kinds(p["geometry"])}),
        "parts": parts,
        "materials": materials,
        "rotation": [[float(v) for v in row] for row in rotation],
        "scale": [float(v) for v in scale],
        "longest_side": float(rng.uniform(0.9, 1.0)),
    }


# --------------------------------------------------------------------------------------------------
# meshes


@dataclass
class PartMesh:
    """One part ready for the GLB: ``vertices [V,3]``, ``normals [V,3]``, ``uv [V,2]`` float64, ``faces [F,3]`` int64."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    material: int


def _split_corners(vertices: np.ndarray, faces: np.ndarray, uvc: np.ndarray) -> PartMesh:
    """Give each face corner its UV and (smooth or flat) normal, sharing vertices where all three agree."""
    e1, e2 = vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    fn = np.cross(e1, e2)  # area-weighted face normals
    vn = np.zeros_like(vertices)
    np.add.at(vn, faces.ravel(), np.repeat(fn, 3, axis=0))
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    fn_unit = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    smooth = vn[faces]  # [F,3,3]
    sharp = np.einsum("fkc,fc->fk", smooth, fn_unit) < np.cos(np.deg2rad(SMOOTH_ANGLE_DEG))
    cn = np.where(sharp[..., None], fn_unit[:, None, :], smooth)
    key = np.concatenate([
        faces.reshape(-1, 1),
        np.round(uvc.reshape(-1, 2) * 1e6).astype(np.int64),
        np.round(cn.reshape(-1, 3) * 1e4).astype(np.int64),
    ], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return PartMesh("", vertices[faces.ravel()[first]], inverse.reshape(-1, 3).astype(np.int64),
                    cn.reshape(-1, 3)[first], uvc.reshape(-1, 2)[first], 0)


def build_parts(recipe: dict[str, Any]) -> list[PartMesh]:
    """The part meshes of a recipe, transformed and normalised into the unit cube (+Y up)."""
    linear = np.asarray(recipe["rotation"]) @ np.diag(recipe["scale"])
    parts = []
    for p in recipe["parts"]:
        verts, faces = build_node(p["geometry"])
        uvc = mats.corner_uvs(verts, faces, p["uv"])  # in the part's own frame, before the asset transform
        mesh = _split_corners(verts @ linear.T, faces, uvc)
        mesh.name, mesh.material = p["name"], p["material"]
        parts.append(mesh)
    lo = np.min([m.vertices.min(0) for m in parts], axis=0)
    hi = np.max([m.vertices.max(0) for m in parts], axis=0)
    s = recipe["longest_side"] / float(np.max(hi - lo))
    for m in parts:
        m.vertices = (m.vertices - (lo + hi) / 2) * s
    return parts


def _degenerate(parts: list[PartMesh]) -> str | None:
    for m in parts:
        tri = m.vertices[m.faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        if len(m.faces) < 4 or area < 1e-3:
            return f"part {m.name} has {len(m.faces)} faces and area {area:.2g}"
        if len(m.faces) > 200_000:
            return f"part {m.name} has {len(m.faces)} faces"
    return None


def to_scene(recipe: dict[str, Any], parts: list[PartMesh]) -> trimesh.Scene:
    """A trimesh scene with one textured mesh node per part (materials shared between parts by slot)."""
    materials = [mats.to_pbr(m, f"material{i}") for i, m in enumerate(recipe["materials"])]
    scene = trimesh.Scene()
    for i, m in enumerate(parts):
        visual = trimesh.visual.TextureVisuals(uv=m.uv, material=materials[m.material])
        mesh = trimesh.Trimesh(m.vertices, m.faces, vertex_normals=m.normals, visual=visual, process=False)
        name = f"{i:02d}_{m.name}"
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    scene.metadata["recipe"] = recipe  # written to the glTF scene's extras
    return scene


def generate(seed: int, index: int) -> tuple[dict[str, Any], trimesh.Scene]:
    """Recipe and scene of asset ``index`` of ``seed`` (retrying the rare degenerate recipe)."""
    problems = []
    for attempt in range(MAX_ATTEMPTS):
        recipe = sample_recipe(seed, index, attempt)
        try:
            parts = build_parts(recipe)
        except EmptySolid as exc:
            problems.append(str(exc))
            continue
        problem = _degenerate(parts)
        if problem is None:
            return recipe, to_scene(recipe, parts)
        problems.append(problem)
    raise RuntimeError(f"asset {index} of seed {seed}: no valid recipe in {MAX_ATTEMPTS} attempts ({'; '.join(problems)})")


def glb_bytes(scene: trimesh.Scene) -> bytes:
    """The binary glTF of a scene (with normals; PNG textures)."""
    return trimesh.exchange.gltf.export_glb(scene, include_normals=True)


# --------------------------------------------------------------------------------------------------
# files


def glb_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON chunk of a complete binary glTF 2.0 file, or None if the file is missing, truncated or not GLB."""
    try:
        return read_glb_json(path, complete=True)
    except UserError:
        return None


def stored_recipe(path: str | os.PathLike, seed: int, index: int) -> dict[str, Any] | None:
    """The recipe kept in a synthetic GLB's scene extras if the file is complete and is asset ``index`` of
    ``seed`` from this generator version; otherwise None (the file must be made again)."""
    tree = glb_json(path)
    try:
        recipe = tree["scenes"][0]["extras"]["recipe"]
    except (TypeError, KeyError, IndexError):
        return None
    ok = (recipe.get("seed"), recipe.get("index"), recipe.get("generator_version")) == (seed, index, GENERATOR_VERSION)
    return recipe if ok and tree.get("meshes") else None


def _worker(job: tuple[int, int, str, bool]) -> dict[str, Any]:
    """Make (or keep) one asset file; return its manifest entry and, if asked, a thumbnail."""
    seed, index, out_dir, thumb = job
    path = Path(out_dir) / asset_name(seed, index)
    recipe = stored_recipe(path, seed, index)
    skipped = recipe is not None
    if skipped:
        scene = trimesh.load(path, file_type="glb") if thumb else None
    else:
        recipe, scene = generate(seed, index)
        remove_stale_temporaries(path)  # left by a run that was killed while writing this asset
        with atomic_output(path) as tmp:
            tmp.write_bytes(glb_bytes(scene))
        failpoint("synth.item")
    image = None
    if thumb:
        from pixal3d.data.preview import render_scene

        image = render_scene(scene, SHEET_TILE, view="three_quarter")
    data = path.read_bytes()
    return {"index": index, "file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "skipped": skipped, "recipe": recipe, "thumbnail": image}


@dataclass
class SynthResult:
    """What :func:`synthesize` did: files written and kept, and where the manifest and sheet are."""

    written: int
    skipped: int
    manifest: Path
    sheet: Path | None


def synthesize(count: int, out_dir: str | os.PathLike, seed: int = 0, workers: int | None = None, sheet: bool = True,
               progress: Callable[[int, int], None] | None = None) -> SynthResult:
    """Write assets ``0 … count-1`` of ``seed`` as GLBs into ``out_dir`` with ``manifest.json``
    (and ``contact_sheet.png`` if ``sheet``). Existing valid files are kept (resumable);
    ``progress(done, count)`` is called after each asset.
    """
    if count < 1:
        raise UserError(f"the number of assets must be at least 1 (got {count})")
    if seed < 0:
        raise UserError(f"the seed must be non-negative (got {seed})")
    workers = resolve_workers(workers)
    out = writable_folder(out_dir)
    jobs = [(seed, i, str(out), sheet and i < SHEET_MAX) for i in range(count)]
    entries: list[dict[str, Any]] = []
    workers = min(workers, count)
    results: Iterable[dict[str, Any]]
    if workers == 1:
        results = map(_worker, jobs)
        entries = _collect(results, count, progress)
    else:
        try:
            with ProcessPoolExecutor(max_workers=workers, initializer=ignore_interrupts) as pool:
                entries = _collect(pool.map(_worker, jobs, chunksize=1), count, progress)
        except BrokenProcessPool:
            raise UserError(f"a worker process died (out of memory?); finished assets are kept in {out}: run the "
                            f"same command again to resume (with fewer --workers if memory is short)") from None
    sheet_path = None
    if sheet:
        sheet_path = out / CONTACT_SHEET
        from pixal3d.data.preview import contact_sheet

        image = contact_sheet([e["thumbnail"] for e in entries if e["thumbnail"] is not None],
                              [str(e["index"]) for e in entries if e["thumbnail"] is not None])
        with atomic_output(sheet_path) as tmp:
            image.save(tmp)
    manifest = {
        "format": "pixal3d-synth",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "count": count,
        "frame": "glTF +Y up, front facing +Z, inside [-0.5, 0.5]^3",
        "assets": [{k: e[k] for k in ("index", "file", "bytes", "sha256", "recipe")} for e in entries],
    }
    write_json(out / MANIFEST, manifest, indent=1)
    skipped = sum(e["skipped"] for e in entries)
    return SynthResult(written=count - skipped, skipped=skipped, manifest=out / MANIFEST, sheet=sheet_path)


def _collect(results: Iterable[dict[str, Any]], count: int, progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    entries = []
    for e in results:
        entries.append(e)
        if progress:
            progress(len(entries), count)
    return entries
