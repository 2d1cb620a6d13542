"""Sweet Home 3D furniture catalogues (``.sh3f``) → GLB training assets with their licences and credits.

A ``.sh3f`` file (Debian's ``sweethome3d-furniture`` installs five under ``/usr/share/sweethome3d/furniture``:
820 household objects, CC0 or CC-BY-3.0) is a zip holding ``PluginFurnitureCatalog.properties`` (a Java
properties file: ``model#N``, ``name#N``, ``creator#N``, ``category#N``, ``width#N`` …, and an optional
``modelRotation#N`` = 9 numbers, a row-major rotation that turns the model upright), ``LICENSE.TXT`` and
the models (OBJ + MTL + textures, one folder each).

:func:`import_catalogs` writes, for every object that is not a door or window (wall cut-outs, not objects):

* ``OUT/<catalogue>/<object>.glb`` — the OBJ with its materials and textures, ``modelRotation`` applied,
  ``+y`` up as in Sweet Home 3D (so ``pixal3d data build --up +y`` reads it as authored);
* ``OUT/sources.json`` — per asset: catalogue, catalogue id, name, category, creator, licence, size in cm;
* ``OUT/CREDITS.md`` — the attribution list (every CC-BY creator, per catalogue and licence).

Licences are read from each catalogue's ``LICENSE.TXT`` (CC0 or CC-BY 3.0, Unported or United States);
a catalogue under any other licence is refused, so everything imported is redistributable with credit.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pixal3d.errors import UserError
from pixal3d.utils.files import atomic_output, write_json

#: licence id → the phrase of LICENSE.TXT that identifies it (checked in this order)
_LICENCES = (
    ("CC0-1.0", re.compile(r"Creative Commons Zero|CC0", re.I)),
    ("CC-BY-3.0-US", re.compile(r"Attribution 3\.0 United States|licenses/by/3\.0/us", re.I)),
    ("CC-BY-3.0", re.compile(r"Attribution 3\.0", re.I)),
)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` text → ``{key: value}`` (comments, ``key=value`` / ``key: value`` /
    ``key value``, backslash line continuations and ``\\uXXXX``/``\\t``/``\\n`` escapes)."""
    def unescape(s: str) -> str:
        def one(m: re.Match) -> str:
            code = m.group(1)
            if code[0] == "u" and len(code) == 5:
                return chr(int(code[1:], 16))
            return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(code, code)
        return _ESCAPE.sub(one, s)

    out: dict[str, str] = {}
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.lstrip() if not pending else raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        m = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", line)
        if m:
            out[unescape(m.group(1))] = unescape(m.group(2))
        else:
            out[unescape(line.strip())] = ""
    return out


def catalog_licence(text: str) -> str:
    """The licence id of a catalogue's ``LICENSE.TXT``; :class:`UserError` when it is not CC0 / CC-BY 3.0."""
    for licence, pattern in _LICENCES:
        if pattern.search(text):
            return licence
    raise UserError("catalogue licence is neither CC0 nor CC-BY 3.0; not imported")


@dataclass(frozen=True)
class FurnitureItem:
    """One object of a catalogue (sizes in centimetres, as in the catalogue)."""

    catalog: str
    index: int
    item_id: str
    name: str
    category: str
    creator: str
    licence: str
    model: str  # path inside the zip, without the leading '/'
    width: float
    depth: float
    height: float
    rotation: tuple[float, ...] | None  # 9 numbers, row-major, or None

    @property
    def asset_name(self) -> str:
        """File-safe name of the object's GLB (``<index>_<name>``)."""
        stem = re.sub(r"[^A-Za-z0-9]+", "_", self.item_id.split("#")[-1] or self.name).strip("_").lower()
        return f"{self.index:03d}_{stem or 'object'}"


def read_catalog(path: str | os.PathLike) -> tuple[list[FurnitureItem], int]:
    """The objects of one ``.sh3f`` (doors and windows left out) and how many were left out."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read furniture catalogue {path}: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        if "PluginFurnitureCatalog.properties" not in names:
            raise UserError(f"{path} has no PluginFurnitureCatalog.properties (not a Sweet Home 3D catalogue)")
        props = parse_properties(archive.read("PluginFurnitureCatalog.properties").decode("latin-1"))
        licence_text = archive.read("LICENSE.TXT").decode("latin-1") if "LICENSE.TXT" in names else ""
    try:
        licence = catalog_licence(licence_text)
    except UserError as exc:
        raise UserError(f"{path.name}: {exc}") from exc
    catalog = path.stem
    items, skipped = [], 0
    indices = sorted(int(k.split("#")[1]) for k in props if k.startswith("model#") and k.split("#")[1].isdigit())
    for n in indices:
        get = lambda key, default="": props.get(f"{key}#{n}", default)  # noqa: E731
        if get("doorOrWindow").lower() == "true":
            skipped += 1
            continue
        rotation = tuple(float(x) for x in get("modelRotation").split()) or None
        if rotation is not None and len(rotation) != 9:
            raise UserError(f"{path.name}: modelRotation#{n} must have 9 numbers")
        items.append(FurnitureItem(
            catalog=catalog, index=n, item_id=get("id", f"{catalog}#{n}"), name=get("name", f"object {n}"),
            category=get("category"), creator=get("creator", "unknown"), licence=licence,
            model=get("model").lstrip("/"), width=float(get("width", "0") or 0), depth=float(get("depth", "0") or 0),
            height=float(get("height", "0") or 0), rotation=rotation))
    return items, skipped


def _load_obj_scene(archive: zipfile.ZipFile, model: str):
    """The OBJ ``model`` of ``archive`` as a trimesh Scene: its folder (MTL, textures) is unpacked to a
    temporary directory so trimesh resolves the references as on disk."""
    import tempfile

    import trimesh

    base = model.rsplit("/", 1)[0] + "/" if "/" in model else ""
    with tempfile.TemporaryDirectory(prefix="pixal3d-sh3f-") as tmp:
        for name in archive.namelist():
            if name.startswith(base) and not name.endswith("/") and ".." not in name.split("/"):
                archive.extract(name, tmp)
        return trimesh.load(str(Path(tmp) / model), force="scene", process=False)


def export_item(archive: zipfile.ZipFile, item: FurnitureItem, out: Path) -> None:
    """Write one object as a GLB (``modelRotation`` applied) to ``out``, atomically."""
    scene = _load_obj_scene(archive, item.model)
    if not scene.geometry:
        raise UserError(f"{item.item_id}: model has no triangles")
    if item.rotation is not None:
        transform = np.eye(4)
        transform[:3, :3] = np.asarray(item.rotation, dtype=np.float64).reshape(3, 3)
        scene.apply_transform(transform)
    with atomic_output(out) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))


def import_catalogs(catalogs: list[str | os.PathLike], out_dir: str | os.PathLike,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Import every object of the given ``.sh3f`` files (or folders of them) into ``out_dir`` (module docstring).

    Existing GLBs are kept (resumable). Returns counts ``{"written", "kept", "failed", "skipped_doors_windows"}``;
    failures are listed in ``sources.json`` under ``"failed"``.
    """
    files: list[Path] = []
    for c in catalogs:
        p = Path(c)
        if p.is_dir():
            files += sorted(p.glob("*.sh3f"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"furniture catalogue not found: {p}")
    if not files:
        raise UserError("no .sh3f furniture catalogues given (Debian: apt-get install sweethome3d-furniture, "
                        "then /usr/share/sweethome3d/furniture)")
    out = Path(out_dir)
    catalog_items = [(f, *read_catalog(f)) for f in files]
    total = sum(len(items) for _, items, _ in catalog_items)
    counts = {"written": 0, "kept": 0, "failed": 0, "skipped_doors_windows": sum(s for *_, s in catalog_items)}
    sources, failed, done = [], [], 0
    for path, items, _ in catalog_items:
        with zipfile.ZipFile(path) as archive:
            for item in items:
                target = out / item.catalog / f"{item.asset_name}.glb"
                try:
                    if target.is_file() and target.stat().st_size > 0:
                        counts["kept"] += 1
                    else:
                        export_item(archive, item, target)
                        counts["written"] += 1
                    sources.append({"file": f"{item.catalog}/{target.name}", **asdict(item)})
                except Exception as exc:  # one broken model must not stop the import
                    counts["failed"] += 1
                    failed.append({"item": item.item_id, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
                done += 1
                if progress:
                    progress(done, total)
    write_json(out / "sources.json", {"format": "pixal3d-furniture-sources", "assets": sources, "failed": failed}, indent=1)
    write_credits(sources, out / "CREDITS.md")
    return counts


def write_credits(sources: list[dict], path: str | os.PathLike) -> None:
    """The attribution file of imported assets: per catalogue and licence, every object with its creator."""
    lines = ["# Credits of the imported furniture models", "",
             "Sweet Home 3D furniture catalogues (Debian package `sweethome3d-furniture`). CC-BY-3.0 models are "
             "used under the Creative Commons Attribution 3.0 licence (Unported or United States, as marked); "
             "CC0 models are in the public domain and credited anyway.", ""]
    by_catalog: dict[tuple[str, str], list[dict]] = {}
    for s in sources:
        by_catalog.setdefault((s["catalog"], s["licence"]), []).append(s)
    for (catalog, licence), items in sorted(by_catalog.items()):
        lines += [f"## {catalog} ({licence}, {len(items)} models)", ""]
        lines += [f"* {s['name']} ({s['category'] or 'uncategorised'}) by {s['creator']}" for s in items]
        lines.append("")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines))
