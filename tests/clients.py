"""Real glTF clients for the export tests: the Khronos glTF-Validator and Blender's glTF importer.

Both are installed by ``bash scripts/setup.sh --dev``: the validator into the repository's
``node_modules`` (``package.json``), Blender as the ``bpy`` wheel in its own virtual environment
``.bpy/`` (``bpy`` pins NumPy 1.x, so it must not share the project's environment). Tests that need a
missing client are skipped with that instruction.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = REPO / "node_modules" / "gltf-validator"
BPY_PYTHON = Path(os.environ.get("PIXAL3D_BPY_PYTHON", REPO / ".bpy" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")))

_VALIDATE_JS = r"""
const fs = require('fs');
const validator = require(process.argv[1]);
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
validator.validateBytes(data, {maxIssues: 100}).then(
  (report) => { process.stdout.write(JSON.stringify(report)); },
  (error) => { process.stderr.write(String(error)); process.exit(1); });
"""

_BLENDER_PY = r"""
import json, sys
import bpy

def inspect(path):
  bpy.ops.wm.read_factory_settings(use_empty=True)
  result = bpy.ops.import_scene.gltf(filepath=path)
  out = {"result": sorted(result), "meshes": [], "cameras": [], "materials": []}
  for obj in bpy.data.objects:
      if obj.type == "MESH":
          out["meshes"].append({"name": obj.name, "faces": len(obj.data.polygons), "vertices": len(obj.data.vertices)})
      elif obj.type == "CAMERA":
          out["cameras"].append({"name": obj.name, "location": list(obj.matrix_world.translation), "angle_y": obj.data.angle_y})
  for mat in bpy.data.materials:
      if not mat.use_nodes:
          continue
      for node in mat.node_tree.nodes:
          if node.type != "BSDF_PRINCIPLED":
              continue
          linked = {}
          for name in ("Base Color", "Metallic", "Roughness", "Alpha"):
              sock = node.inputs[name]
              # follow the link back (through separate-colour / math nodes) to an image texture
              stack = [l.from_node for l in sock.links]
              found = False
              while stack:
                  n = stack.pop()
                  if n.type == "TEX_IMAGE" and n.image is not None:
                      found = True
                      break
                  stack.extend(l.from_node for i in n.inputs for l in i.links)
              linked[name] = found
          out["materials"].append({"name": mat.name, "linked": linked,
                                   "blend_method": getattr(mat, "blend_method", None)})
  return out

print("PIXAL3D_JSON" + json.dumps([inspect(p) for p in sys.argv[1:]]))
"""


def validate_gltf(path: str | Path, timeout: float = 120) -> dict:
    """Run the Khronos glTF-Validator on ``path``; returns its report (``issues.numErrors`` etc.).

    Skips the calling test when node or the validator is not installed.
    """
    node = shutil.which("node")
    if node is None or not VALIDATOR.is_dir():
        pytest.skip("glTF validator not installed (run: bash scripts/setup.sh --dev)")
    proc = subprocess.run([node, "-e", _VALIDATE_JS, str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"validator failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


_VALIDATE_MANY_JS = r"""
const fs = require('fs');
const validator = require(process.argv[1]);
(async () => {
  const reports = [];
  for (const path of process.argv.slice(2)) {
    reports.push(await validator.validateBytes(new Uint8Array(fs.readFileSync(path)), {maxIssues: 20}));
  }
  process.stdout.write(JSON.stringify(reports));
})().catch((error) => { process.stderr.write(String(error)); process.exit(1); });
"""


def assert_valid_gltfs(paths: list[str | Path], timeout: float = 300) -> list[dict]:
    """:func:`assert_valid_gltf` for many files in one validator process (skips like :func:`validate_gltf`)."""
    node = shutil.which("node")
    if node is None or not VALIDATOR.is_dir():
        pytest.skip("glTF validator not installed (run: bash scripts/setup.sh --dev)")
    proc = subprocess.run([node, "-e", _VALIDATE_MANY_JS, str(VALIDATOR), *map(str, paths)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"validator failed: {proc.stderr[-2000:]}"
    reports = json.loads(proc.stdout)
    for path, report in zip(paths, reports):
        assert report["issues"]["numErrors"] == 0, f"{path}: {json.dumps(report['issues']['messages'][:5])}"
    return reports


def assert_valid_gltf(path: str | Path) -> dict:
    """:func:`validate_gltf` and assert 0 errors (messages of the first issues on failure)."""
    report = validate_gltf(path)
    issues = report["issues"]
    assert issues["numErrors"] == 0, json.dumps(issues["messages"][:10], indent=1)
    return report


def blender_import(paths: list[str | Path], timeout: float = 300) -> list[dict]:
    """Import each file of ``paths`` with Blender's own glTF importer (one ``bpy`` subprocess).

    Returns per file ``{"result", "meshes", "cameras", "materials": [{"name", "linked": {input: bool}}]}`` where
    ``linked`` says whether each Principled BSDF input (Base Color, Metallic, Roughness, Alpha) is fed
    by an image texture. Skips the calling test when ``bpy`` is not installed.
    """
    if not BPY_PYTHON.exists():
        pytest.skip("Blender (bpy) not installed (run: bash scripts/setup.sh --dev)")
    proc = subprocess.run([str(BPY_PYTHON), "-c", _BLENDER_PY, *map(str, paths)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))
    assert proc.returncode == 0, f"Blender import failed: {proc.stderr[-2000:]}"
    line = next((l for l in proc.stdout.splitlines() if l.startswith("PIXAL3D_JSON")), None)
    assert line is not None, f"no result from Blender: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return json.loads(line[len("PIXAL3D_JSON"):])
