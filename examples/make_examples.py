"""Re-create every bundled example image from the project's procedural assets (``pixal3d.data.synth``).

    python examples/make_examples.py            # writes examples/*.png, examples/multiview/*, examples/scene.png

Everything here is made by this project's own code (procedural shapes and textures, the project's renderer), so
the images carry the project's licence (MIT); see ``examples/README.md``. The output is deterministic:
re-running it reproduces the committed files byte for byte.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pixal3d.core.camera import distance_from_fov, orbit_cameras  # noqa: E402
from pixal3d.core.render import ViewCamera, look_at, render, save_png, scene_render_meshes  # noqa: E402
from pixal3d.data.synth import generate  # noqa: E402

HERE = Path(__file__).resolve().parent
#: the official default input camera: horizontal FOV 2·atan(16/35)
FOV = 0.8575560450553894
#: (file, asset index of seed 0, camera distance as a multiple of the official one: framing the whole object)
SINGLE = [("example.png", 109, 1.0), ("car.png", 4, 1.5), ("mug.png", 130, 1.5), ("lamp.png", 95, 1.5),
          ("rocket.png", 18, 1.5)]
#: multi-view: the mug at these turntable azimuths (degrees), elevation 10°, FOV 40°, scaled to fit the views
MULTIVIEW = {"asset": 130, "azimuths": [0, 90, 180, 270], "elevation": 10.0, "fov_deg": 40.0, "scale": 0.6, "size": 384}
#: scene: (asset, x, depth, height) on a ground plane 1 unit below a camera pitched 15° down (``pixal3d scene``'s
#: default ground-plane rule), 768×512 picture at the official FOV
SCENE = [(18, -1.05, 3.6, 0.9), (130, 0.0, 3.3, 0.55), (4, 1.1, 3.8, 0.55)]

#: glTF world (+Y up) from the Blender world (+Z up) of :func:`orbit_cameras`
BLENDER_TO_GLTF = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def _meshes(index: int, scale: float = 1.0, offset=(0.0, 0.0, 0.0)):
    _, scene = generate(0, index)
    meshes = scene_render_meshes(scene)
    for m in meshes:
        m.vertices = m.vertices * scale + np.asarray(offset)
    return meshes


def single_views() -> None:
    d = 1.0 / (2.0 * math.tan(FOV / 2.0))
    for name, index, factor in SINGLE:
        cam = np.eye(4)
        cam[2, 3] = d * factor  # at (0, 0, distance) looking along −Z, +Y up
        save_png(render(_meshes(index), ViewCamera(cam, FOV), 512, background=None, supersample=2), HERE / name)


def multiview() -> None:
    spec = MULTIVIEW
    fov = math.radians(spec["fov_deg"])
    size = spec["size"]
    folder = HERE / "multiview"
    folder.mkdir(exist_ok=True)
    meshes = _meshes(spec["asset"], spec["scale"])
    cams = orbit_cameras(spec["azimuths"], spec["elevation"], fov, distance_from_fov(fov), size, size)
    frames = []
    for azimuth, cam in zip(spec["azimuths"], cams):
        c2w = BLENDER_TO_GLTF @ cam.cam_to_world.double().numpy()
        save_png(render(meshes, ViewCamera(c2w, fov), size, background=None, supersample=2),
                 folder / f"mug_{azimuth:03d}.png")
        frames.append({"file_path": f"mug_{azimuth:03d}.png", "transform_matrix": cam.cam_to_world.double().tolist()})
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": fov, "frames": frames}, indent=1) + "\n")


def scene() -> None:
    width, height = 768, 512
    pitch = math.radians(15.0)
    eye = np.array([0.0, 1.0, 0.0])
    forward = np.array([0.0, -math.sin(pitch), -math.cos(pitch)])
    camera = ViewCamera(look_at(eye, eye + forward), FOV)  # square render: vertical FOV = the picture's horizontal
    meshes = []
    for index, x, depth, size in SCENE:
        parts = _meshes(index)
        vertices = np.concatenate([m.vertices for m in parts])
        scale = size / float(vertices[:, 1].max() - vertices[:, 1].min())
        centre = (vertices.min(0) + vertices.max(0)) / 2
        for m in parts:
            m.vertices = (m.vertices - [centre[0], vertices[:, 1].min(), centre[2]]) * scale + [x, 0.0, -depth]
        meshes += parts
    square = render(meshes, camera, width, background=None, supersample=2)
    top = (width - height) // 2
    save_png(square[top:top + height], HERE / "scene.png")


if __name__ == "__main__":
    single_views()
    multiview()
    scene()
    print(f"wrote the examples under {HERE}")
