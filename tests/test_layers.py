"""The package's layers: every import of ``pixal3d/`` (module level or inside a function) goes to the same
layer or a lower one, the packages' import graph has no cycle, and ``mesh`` never imports ``export``.

The layers, bottom to top (see docs/architecture.md, "Package layout")::

    L6  web, cli                                  entry points: commands, the app
    L5  training, evaluation                      train models, measure them
    L4  pipelines                                 image → asset → GLB, joined
    L3  conditioning, export, data                image features, GLB export, datasets
    L2  mesh, image, models, sampling             meshes, pictures, networks, samplers
    L1  core, ovoxel                              cameras, sparse tensor, voxel asset, renderer, GLB JSON, configs, O-Voxel
    L0  errors, paths, devices, utils             shared plumbing

``pixal3d/__init__.py`` and every ``__main__.py`` are entry points and may import anything. Imports are read
with :mod:`ast` (nothing is imported), so a lazy import inside a function counts like a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pixal3d"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "devices", "utils"),
    ("core", "ovoxel"),
    ("mesh", "image", "models", "sampling"),
    ("conditioning", "export", "data"),
    ("pipelines",),
    ("training", "evaluation"),
    ("web", "cli"),
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}

#: the names ``pixal3d/__init__.py`` exports lazily (``from pixal3d import Pixal3DPipeline``) → their module
ROOT_EXPORTS = {"Pixal3DPipeline": "pixal3d.pipelines.pixal3d", "GenerationOptions": "pixal3d.pipelines.pixal3d"}

#: ``(importing module, imported module)`` pairs let through against the layers, each with its reason. Keep
#: it empty: fix a violation by moving the code to the layer where it belongs.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_entry_point(path: Path) -> bool:
    return path.name == "__main__.py" or path == PACKAGE / "__init__.py"


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``pixal3d`` module the file ``path`` imports, anywhere in it."""
    return imports_of(path.read_text(), _module_name(path), path.name == "__init__.py", str(path))


def imports_of(source: str, module: str, is_package: bool = False, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, module)`` of every ``pixal3d`` module that ``source`` (the text of ``module``) imports."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from .. import y
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "pixal3d":  # from pixal3d import paths / __version__ / Pixal3DPipeline
                for alias in node.names:
                    if alias.name in ROOT_EXPORTS:
                        found.append((node.lineno, ROOT_EXPORTS[alias.name]))
                    elif (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file():
                        found.append((node.lineno, f"pixal3d.{alias.name}"))
            else:
                found.append((node.lineno, target))
    return sorted((line, name) for line, name in found if name.startswith("pixal3d."))


def _package(module: str) -> str:
    """``pixal3d.training.sc_vae`` → ``training``."""
    return module.split(".")[1]


def _edges() -> list[tuple[str, int, str, str]]:
    """``(file, line, importing module, imported module)`` of every import between the package's modules."""
    edges = []
    for path in _sources():
        if _is_entry_point(path):
            continue
        module = _module_name(path)
        for line, target in _imports(path):
            edges.append((str(path.relative_to(PACKAGE.parent)), line, module, target))
    return edges


def test_every_package_has_a_layer():
    packages = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _sources() if p.parent != PACKAGE
                or not _is_entry_point(p)}
    assert packages - set(LAYER) == set(), "give these packages a layer in tests/test_layers.py and docs/architecture.md"


def test_imports_go_down_or_stay_in_their_layer():
    violations = []
    for where, line, module, target in _edges():
        src, dst = _package(module), _package(target)
        if LAYER[dst] > LAYER[src] and (module, target) not in ALLOWED:
            violations.append(f"{where}:{line}: {module} (L{LAYER[src]} {src}) imports {target} (L{LAYER[dst]} {dst})")
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_allowed_exceptions_are_still_needed():
    used = {(module, target) for _, _, module, target in _edges()}
    assert ALLOWED <= used, f"remove from ALLOWED (no such import any more): {sorted(ALLOWED - used)}"


def test_package_graph_is_acyclic():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for file, line, module, target in _edges():
        src, dst = _package(module), _package(target)
        if src != dst:
            graph.setdefault(src, set()).add(dst)
            where.setdefault((src, dst), f"{file}:{line} imports {target}")
    done: set[str] = set()

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        """A cycle through the packages on ``path`` (ending at ``node``), depth first."""
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = cycle_from(nxt, path + [nxt])
                if cycle:
                    return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = None if start in done else cycle_from(start, [start])
        if cycle:
            arrows = [where[(a, b)] for a, b in zip(cycle, cycle[1:])]
            raise AssertionError(f"import cycle between packages {' → '.join(cycle)}:\n" + "\n".join(arrows))


def test_mesh_never_imports_export():
    offending = [f"{file}:{line}: {module} imports {target}" for file, line, module, target in _edges()
                 if _package(module) == "mesh" and _package(target) == "export"]
    assert not offending, "\n".join(offending)


def test_the_checker_sees_lazy_relative_and_root_imports():
    """A check of the checker: imports inside functions, relative ones and the root package's names."""
    source = ("import os\n"
              "def f():\n    from ..export import glb\n    import pixal3d.cli.generate\n    from . import io\n"
              "    from pixal3d import Pixal3DPipeline, __version__, paths\n")
    assert imports_of(source, "pixal3d.mesh.probe") == [
        (3, "pixal3d.export"), (4, "pixal3d.cli.generate"), (5, "pixal3d.mesh"), (6, "pixal3d.paths"),
        (6, "pixal3d.pipelines.pixal3d")]
    assert imports_of("from .sparse import tensor\n", "pixal3d.models", is_package=True) == [(1, "pixal3d.models.sparse")]
