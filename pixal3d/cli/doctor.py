"""``pixal3d doctor``: what this installation can do."""

from __future__ import annotations

import importlib
import platform
import shutil
import subprocess

from pixal3d import __version__, paths
from pixal3d.devices import ENV_VAR, available_devices, select_device

#: optional Python components → what they are used for
OPTIONAL_MODULES = {
    "transformers": "DINOv3 image features, BiRefNet background removal",
    "trimesh": "mesh I/O and GLB writing",
    "xatlas": "UV unwrapping",
    "fast_simplification": "mesh simplification",
    "cv2": "texture seam inpainting",
    "skimage": "image utilities",
    "gradio": "web app (app.py)",
    "bpy": "Blender import check (tests)",
}


def module_status(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # any import failure means "not usable"
        return f"missing ({type(exc).__name__})"
    return f"ok {getattr(module, '__version__', '')}".rstrip()


def gltf_validator_status() -> str:
    exe = shutil.which("gltf_validator") or shutil.which("gltf-validator")
    if exe:
        return f"ok ({exe})"
    if shutil.which("node"):
        try:
            out = subprocess.run(["node", "-e", "require.resolve('gltf-validator')"], capture_output=True, timeout=20)
            if out.returncode == 0:
                return "ok (node module)"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "missing"


def report(device: str | None) -> list[str]:
    """The lines ``pixal3d doctor`` prints."""
    import torch

    lines = [
        f"pixal3d {__version__}",
        f"python {platform.python_version()} ({platform.machine()})",
        f"torch {torch.__version__}",
        f"devices available: {', '.join(available_devices())}",
        f"device selected: {select_device(device)} (override with --device or ${ENV_VAR})",
        "optional components:",
    ]
    for name, use in OPTIONAL_MODULES.items():
        lines.append(f"  {name:<20} {module_status(name):<24} {use}")
    lines.append(f"  {'gltf-validator':<20} {gltf_validator_status():<24} GLB validation (tests)")
    lines.append(f"model folders (root: {paths.models_root()}, set ${paths.ENV_VAR} to change):")
    for name, (sub, what, origin) in paths.COMPONENTS.items():
        path = paths.component_path(name)
        state = "found" if path.exists() else "missing"
        lines.append(f"  {name:<14} {state:<8} {path}  — {what}; from {origin}")
    return lines


def run(args) -> int:
    print("\n".join(report(args.device)))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="show versions, devices, optional components and model folders")
    parser.add_argument("--device", default=None, help="device to check (cpu, cuda, cuda:N, mps)")
    parser.set_defaults(handler=run)
