"""The evaluation-overlap guard: no evaluation mesh may enter data building or training.

Evaluation meshes (``shared/evalsets/meshes``) must only ever be evaluated. Copies of some of them ship
inside ordinary packages (pybullet's ``duck.obj`` is the Khronos Duck, its ``bunny.obj`` the Stanford
bunny), often re-exported: another format, other axes, another scale, re-ordered or re-tessellated faces.
So a mesh is refused when either

* its file bytes have the SHA-256 of an evaluation file, or
* its **shape signature** is within :data:`MATCH_DISTANCE` of an evaluation mesh's.

The shape signature is invariant to translation, rotation, uniform scale and tessellation: area-weighted
surface samples (fixed seed) are centred on their mean and divided by their RMS radius; the signature is
the three principal variances (sorted, summing to 1) followed by the D2 shape distribution (the histogram
of distances between random sample pairs, :data:`D2_BINS` bins over ``[0, D2_RANGE]`` RMS radii).

The signatures of the evaluation set are committed beside this module (:data:`SIGNATURE_FILE`, written by
``pixal3d data evalset-signatures``), so the guard also holds on machines without ``shared/``; when the
evaluation folder is present (:func:`default_evalset_dir`) its files are fingerprinted too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixal3d.errors import UserError
from pixal3d.utils.files import write_json

#: the committed signatures of the evaluation meshes
SIGNATURE_FILE = Path(__file__).with_name("evalset_signatures.json")
#: surface samples per signature
SAMPLES = 32768
#: random point pairs of the D2 distribution
D2_PAIRS = 1_000_000
D2_BINS = 48
D2_RANGE = 4.0
#: L1 distance between signatures below which two meshes count as the same shape. Measured: a rotated,
#: rescaled, subdivided, face-shuffled copy of an evaluation mesh ≤ 0.024; two distinct evaluation meshes
#: ≥ 0.094; procedural training assets ≥ 0.063 from every evaluation mesh
MATCH_DISTANCE = 0.045
_SEED = 20260601


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shape_signature(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Similarity- and tessellation-invariant signature ``[3 + D2_BINS]`` float64 of a triangle mesh.

    ``vertices [V,3]`` float, ``faces [F,3]`` int (any frame, any scale). See the module docstring.
    :class:`UserError` for a mesh without area.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    area = np.where(np.isfinite(area), area, 0.0)
    if not area.sum() > 0:
        raise UserError("mesh has no surface area")
    rng = np.random.default_rng(_SEED)
    pick = rng.choice(len(f), size=SAMPLES, p=area / area.sum())
    r1, r2 = rng.random((2, SAMPLES, 1))
    s = np.sqrt(r1)
    points = (1 - s) * tri[pick, 0] + s * (1 - r2) * tri[pick, 1] + s * r2 * tri[pick, 2]
    points -= points.mean(0)
    rms = np.sqrt((points ** 2).sum(1).mean())
    points /= rms
    variances = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1]
    i, j = rng.integers(0, SAMPLES, (2, D2_PAIRS))
    d2, _ = np.histogram(np.linalg.norm(points[i] - points[j], axis=1), bins=D2_BINS, range=(0.0, D2_RANGE))
    return np.concatenate([variances / variances.sum(), d2 / D2_PAIRS])


def signature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance between two :func:`shape_signature` vectors (0 = same shape, at most 4)."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).sum())


def mesh_file_signature(path: str | os.PathLike, up: str = "+y") -> np.ndarray:
    """:func:`shape_signature` of a mesh file (every triangle primitive, node transforms applied)."""
    from pixal3d.mesh.io import load_mesh

    mesh = load_mesh(path, up=up)
    return shape_signature(mesh.vertices, mesh.faces)


def default_evalset_dir() -> Path | None:
    """The evaluation mesh folder when present: ``$PIXAL3D_SHARED/evalsets/meshes`` or ``../shared/…``
    beside the checkout; None when neither exists."""
    candidates = []
    if os.environ.get("PIXAL3D_SHARED"):
        candidates.append(Path(os.environ["PIXAL3D_SHARED"]) / "evalsets" / "meshes")
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "evalsets" / "meshes")
    return next((c for c in candidates if c.is_dir()), None)


@dataclass(frozen=True)
class EvalEntry:
    """One evaluation mesh: file name, SHA-256 of its bytes, shape signature."""

    name: str
    sha256: str
    signature: np.ndarray


def evalset_entries(mesh_dir: str | os.PathLike) -> list[EvalEntry]:
    """Fingerprints of every mesh file under ``mesh_dir`` (sorted by name)."""
    from pixal3d.mesh.io import MESH_SUFFIXES

    entries = []
    for path in sorted(Path(mesh_dir).rglob("*")):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            entries.append(EvalEntry(path.name, file_sha256(path), mesh_file_signature(path)))
    return entries


def write_signatures(mesh_dir: str | os.PathLike, out: str | os.PathLike = SIGNATURE_FILE) -> int:
    """Write the fingerprints of ``mesh_dir`` as JSON to ``out`` (atomically); returns the mesh count."""
    entries = evalset_entries(mesh_dir)
    if not entries:
        raise UserError(f"no mesh files under {mesh_dir}")
    data = {"format": "pixal3d-evalset-signatures", "samples": SAMPLES, "d2_bins": D2_BINS, "d2_range": D2_RANGE,
            "meshes": [{"name": e.name, "sha256": e.sha256, "signature": [round(float(x), 7) for x in e.signature]}
                       for e in entries]}
    write_json(out, data, indent=1)
    return len(entries)


def load_signatures(path: str | os.PathLike = SIGNATURE_FILE) -> list[EvalEntry]:
    """The committed fingerprints (:func:`write_signatures`)."""
    data = json.loads(Path(path).read_text())
    return [EvalEntry(m["name"], m["sha256"], np.asarray(m["signature"], dtype=np.float64)) for m in data["meshes"]]


class EvalOverlapGuard:
    """Refuses meshes that are evaluation meshes (by bytes or by shape; see the module docstring).

    Built from the committed signatures plus, when given or found, a live evaluation folder.
    """

    def __init__(self, entries: list[EvalEntry]):
        self.entries = entries
        self.hashes = {e.sha256: e.name for e in entries}
        self.signatures = np.stack([e.signature for e in entries]) if entries else np.zeros((0, 3 + D2_BINS))

    @classmethod
    def default(cls) -> "EvalOverlapGuard":
        """The committed signatures, plus the evaluation folder's file hashes when it is present."""
        entries = load_signatures()
        live = default_evalset_dir()
        if live is not None:
            from pixal3d.mesh.io import MESH_SUFFIXES

            known = {e.sha256 for e in entries}
            for path in sorted(live.rglob("*")):
                if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
                    digest = file_sha256(path)
                    if digest not in known:
                        entries.append(EvalEntry(path.name, digest, mesh_file_signature(path)))
        return cls(entries)

    def match(self, path: str | os.PathLike, vertices: np.ndarray | None = None, faces: np.ndarray | None = None,
              sha256: str | None = None) -> str | None:
        """The evaluation mesh that ``path`` (or its already loaded ``vertices``/``faces``) duplicates, else None."""
        digest = sha256 or file_sha256(path)
        if digest in self.hashes:
            return f"{self.hashes[digest]} (identical file)"
        if len(self.entries) == 0:
            return None
        signature = shape_signature(vertices, faces) if vertices is not None else mesh_file_signature(path)
        distances = np.abs(self.signatures - signature).sum(1)
        best = int(distances.argmin())
        if distances[best] < MATCH_DISTANCE:
            return f"{self.entries[best].name} (same shape, signature distance {distances[best]:.3f})"
        return None
