"""Environment lighting from equirectangular HDR images, for renders that vary the way photos do.

An :class:`Environment` is a distant light given by an equirectangular radiance map (``.exr`` / ``.hdr``,
read with OpenCV) in the render's world frame (+Y up). The renderer (:func:`pixal3d.core.render.render_passes`)
shades with it instead of its camera-fixed preview lights:

* diffuse: ``albedo · (1 − metallic) · E(n) / π``, where the irradiance ``E`` comes from the map's
  order-2 spherical-harmonic projection (nine coefficients per channel, Ramamoorthi & Hanrahan 2001);
* specular: ``F0 · ((1 − r) · L(reflect) + r · E(reflect) / π)`` for roughness ``r``, with ``L`` looked up
  bilinearly in a 64 × 32 area-averaged copy of the map — an approximation that blends a sharp mirror
  image into the irradiance as surfaces get rougher, enough to put real skies, windows and suns into the
  highlights.

Map convention: row 0 is straight up (+Y); column ``u`` has azimuth ``φ = 2π (u + ½) / W − π``; the direction of
pixel ``(u, v)`` with polar angle ``θ = π (v + ½) / H`` is ``(sin θ sin φ, cos θ, −sin θ cos φ)``, so the
image centre looks along −Z. Loaded maps are scaled to a mean radiance of 1 over the sphere; ``exposure``
multiplies it and ``rotation`` places the map in the world (:func:`yaw_rotation` turns it about +Y).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from pixal3d.errors import UserError

#: file types :func:`load_environment` reads
ENVIRONMENT_SUFFIXES = (".exr", ".hdr")
#: size (width, height) of the map kept for mirror lookups
LOOKUP_SIZE = (64, 32)
#: convolution weights of the irradiance for SH bands 0, 1, 2
_BAND_WEIGHTS = np.array([math.pi] + [2 * math.pi / 3] * 3 + [math.pi / 4] * 5)


def sh_basis(d: np.ndarray) -> np.ndarray:
    """Real spherical harmonics of order ≤ 2 at unit directions ``d [M,3]`` → ``[M,9]`` float64."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.stack([
        np.full_like(x, 0.282095),
        0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
        0.546274 * (x * x - y * y)], axis=1)


def equirect_directions(height: int, width: int) -> np.ndarray:
    """Unit direction of every pixel centre of a ``height × width`` map (module convention) → ``[H,W,3]``."""
    theta = math.pi * (np.arange(height) + 0.5) / height
    phi = 2 * math.pi * (np.arange(width) + 0.5) / width - math.pi
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    return np.stack([st * np.sin(phi)[None], np.broadcast_to(ct, (height, width)), -st * np.cos(phi)[None]], axis=-1)


@dataclass(frozen=True)
class Environment:
    """A distant light: ``sh [9,3]`` radiance SH coefficients and ``radiance [H,W,3]`` float32 lookup map (both
    in the map's own frame), ``rotation [3,3]`` taking world directions into the map's frame (``None``: the
    same frame), ``exposure`` (multiplier) and the source ``name``."""

    sh: np.ndarray
    radiance: np.ndarray
    name: str = "environment"
    rotation: np.ndarray | None = None
    exposure: float = 1.0

    @classmethod
    def from_map(cls, radiance: np.ndarray, name: str = "environment") -> Environment:
        """Build from an equirectangular RGB radiance map ``[H,W,3]`` (any positive scale), normalised to a mean
        radiance of 1 over the sphere."""
        radiance = np.nan_to_num(np.asarray(radiance, dtype=np.float64)[..., :3], nan=0.0, posinf=0.0)
        radiance = np.clip(radiance, 0.0, None)
        h, w = radiance.shape[:2]
        d = equirect_directions(h, w).reshape(-1, 3)
        solid_angle = np.repeat(np.sin(math.pi * (np.arange(h) + 0.5) / h) * (math.pi / h) * (2 * math.pi / w), w)
        mean = (radiance.reshape(-1, 3) * solid_angle[:, None]).sum(0).mean() / (4 * math.pi)
        if not mean > 0:
            raise UserError(f"environment {name!r} is black")
        radiance = radiance / mean
        sh = sh_basis(d).T @ (radiance.reshape(-1, 3) * solid_angle[:, None])
        small = cv2.resize(radiance.astype(np.float32), LOOKUP_SIZE, interpolation=cv2.INTER_AREA)
        return cls(sh=sh, radiance=small, name=name)

    def posed(self, rotation: np.ndarray | None = None, exposure: float = 1.0) -> Environment:
        """The same light with world → map ``rotation [3,3]`` (see :func:`yaw_rotation`) and scaled by ``exposure``."""
        return replace(self, rotation=None if rotation is None else np.asarray(rotation, dtype=np.float64),
                       exposure=float(exposure))

    def _to_map_frame(self, d: np.ndarray) -> np.ndarray:
        return d if self.rotation is None else d @ self.rotation.T

    def irradiance(self, n: np.ndarray) -> np.ndarray:
        """Irradiance ``E`` at surfaces with unit normals ``n [M,3]`` (world) → ``[M,3]`` (``π`` for a uniform
        unit environment)."""
        return self.exposure * np.clip((sh_basis(self._to_map_frame(n)) * _BAND_WEIGHTS) @ self.sh, 0.0, None)

    def lookup(self, d: np.ndarray) -> np.ndarray:
        """Radiance arriving from unit directions ``d [M,3]`` (world), bilinear in the lookup map → ``[M,3]``."""
        m = self._to_map_frame(d)
        h, w = self.radiance.shape[:2]
        theta = np.arccos(np.clip(m[:, 1], -1.0, 1.0))
        phi = np.arctan2(m[:, 0], -m[:, 2])
        fy = np.clip(theta / math.pi * h - 0.5, 0.0, h - 1.0)
        fx = (phi + math.pi) / (2 * math.pi) * w - 0.5
        y0 = np.floor(fy).astype(np.int64)
        x0 = np.floor(fx).astype(np.int64)
        ty, tx = (fy - y0)[:, None], (fx - x0)[:, None]
        y1 = np.minimum(y0 + 1, h - 1)
        x0, x1 = x0 % w, (x0 + 1) % w  # the azimuth wraps around
        r = self.radiance
        top = r[y0, x0] * (1 - tx) + r[y0, x1] * tx
        bottom = r[y1, x0] * (1 - tx) + r[y1, x1] * tx
        return self.exposure * (top * (1 - ty) + bottom * ty)

    def shade(self, base: np.ndarray, metal: np.ndarray, rough: np.ndarray, n: np.ndarray,
              v: np.ndarray) -> np.ndarray:
        """Shade fragments: base colour ``[M,3]``, metallic / roughness ``[M]``, unit normals and unit directions to
        the eye ``[M,3]`` (world) → ``[M,3]`` linear colours clipped to [0, 1]."""
        diffuse = base * (1 - metal[:, None])
        f0 = 0.04 * (1 - metal[:, None]) + base * metal[:, None]
        refl = 2 * (n * v).sum(1, keepdims=True) * n - v
        rough = rough[:, None]
        specular = (1 - rough) * self.lookup(refl) + rough * self.irradiance(refl) / math.pi
        return np.clip(diffuse * self.irradiance(n) / math.pi + f0 * specular, 0.0, 1.0)


def yaw_rotation(yaw: float) -> np.ndarray:
    """``[3,3]`` world → map rotation of a map turned by ``yaw`` radians about +Y (right-handed)."""
    c, s = math.cos(yaw), math.sin(yaw)
    # turning the map by +yaw turns world directions by −yaw into the map's frame
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def load_environment(path: str | os.PathLike) -> Environment:
    """Read an equirectangular ``.exr`` / ``.hdr`` radiance map into an :class:`Environment` (named by its stem)."""
    path = Path(path)
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read at imread time, not at import
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is None or image.ndim != 3 or image.shape[2] < 3:
        raise UserError(f"cannot read environment map {path} (an equirectangular RGB .exr or .hdr)")
    return Environment.from_map(image[..., 2::-1], name=path.stem)  # OpenCV's BGR → RGB


def find_environments(folder: str | os.PathLike) -> list[Path]:
    """The ``.exr`` / ``.hdr`` files directly in ``folder``, sorted; :class:`UserError` when there are none."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in ENVIRONMENT_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise UserError(f"no environment maps (.exr/.hdr) in {folder}; on Debian/Ubuntu `apt-get install blender-data` "
                        "puts 8 CC0 maps in /usr/share/blender/datafiles/studiolights/world")
    return files
