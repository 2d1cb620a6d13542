"""Environment lighting: SH irradiance against analytic integrals, lookups, rotation, loading and the renderer."""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest
import trimesh

from pixal3d.core.environment import (Environment, equirect_directions, find_environments, load_environment,
                                      yaw_rotation)
from pixal3d.core.camera import Camera, look_at
from pixal3d.core.render import render, scene_render_meshes
from pixal3d.errors import UserError

H, W = 64, 128


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_uniform_environment_irradiance_is_pi_everywhere():
    env = Environment.from_map(np.full((H, W, 3), 7.0))  # any scale: normalised to mean radiance 1
    n = _unit(np.random.default_rng(0).normal(size=(50, 3)))
    np.testing.assert_allclose(env.irradiance(n), math.pi, rtol=2e-3)
    np.testing.assert_allclose(env.lookup(n), 1.0, rtol=1e-3)
    np.testing.assert_allclose(env.posed(exposure=2.5).irradiance(n), 2.5 * math.pi, rtol=2e-3)


def test_clamped_cosine_sky_matches_the_analytic_irradiance():
    """L(d) = max(0, d·y): mean radiance 1/4, so normalised L = 4 max(0, y); E(+y) = 4 · 2π/3 (exact for the SH
    projection up to the order-2 truncation, which is exact at the pole for this zonal lobe within 1 %)."""
    sky = np.clip(equirect_directions(H, W)[..., 1], 0, None)
    env = Environment.from_map(np.repeat(sky[..., None], 3, axis=2))
    up = env.irradiance(np.array([[0.0, 1.0, 0.0]]))[0, 0]
    assert up == pytest.approx(8 * math.pi / 3, rel=0.01)
    side = env.irradiance(np.array([[1.0, 0.0, 0.0]]))[0, 0]
    assert side == pytest.approx(8 / 3, rel=0.05)  # 4 ∫ max(0, y) max(0, x) dω = 4 · 2/3
    assert env.irradiance(np.array([[0.0, -1.0, 0.0]]))[0, 0] < 0.1 * up


def test_yaw_turns_the_map_about_up():
    radiance = np.full((H, W, 3), 0.01)
    d = equirect_directions(H, W)
    peak = _unit([1.0, 0.3, 0.2])
    radiance[(d @ peak) > 0.97] = 50.0
    env = Environment.from_map(radiance)
    yaw = math.radians(70.0)
    turned = env.posed(yaw_rotation(yaw))
    probes = _unit(np.random.default_rng(1).normal(size=(20000, 3)))
    found = probes[np.argmax(turned.lookup(probes)[:, 0])]
    c, s = math.cos(yaw), math.sin(yaw)
    expected = np.array([c * peak[0] + s * peak[2], peak[1], -s * peak[0] + c * peak[2]])  # +yaw about +y
    assert found @ expected > 0.98
    assert np.allclose(yaw_rotation(yaw) @ yaw_rotation(-yaw), np.eye(3))


def test_render_with_a_uniform_environment_is_albedo_plus_the_dielectric_reflection():
    sphere = trimesh.creation.icosphere(3, radius=0.4)
    sphere.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
        baseColorFactor=[128, 128, 128, 255], metallicFactor=0.0, roughnessFactor=1.0))
    camera = Camera(look_at(np.array([0.0, 0.0, 2.0]), np.zeros(3)), math.radians(40))
    env = Environment.from_map(np.ones((H, W, 3)))
    image = render(scene_render_meshes(sphere), camera, 64, environment=env)
    inside = image[..., 3] > 0.99
    # diffuse albedo · π/π plus F0 0.04 · (rough 1: E/π = 1)
    np.testing.assert_allclose(image[inside][:, :3], 128 / 255 + 0.04, atol=3e-3)
    default = render(scene_render_meshes(sphere), camera, 64)
    assert np.abs(default[inside][:, :3] - image[inside][:, :3]).max() > 0.05  # the default lights differ


def test_load_environment_reads_exr_and_refuses_bad_files(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    radiance = np.zeros((H, W, 3), np.float32)
    radiance[..., 0] = 2.0  # red sky
    assert cv2.imwrite(str(tmp_path / "red.exr"), radiance[..., ::-1])  # OpenCV writes BGR
    env = load_environment(tmp_path / "red.exr")
    assert env.name == "red" and env.radiance.shape == (32, 64, 3)
    assert env.lookup(np.array([[0.0, 1.0, 0.0]]))[0].tolist() == pytest.approx([3.0, 0.0, 0.0], rel=1e-3)  # channel mean 2/3 → 1
    assert find_environments(tmp_path) == [tmp_path / "red.exr"]
    (tmp_path / "broken.hdr").write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read environment map"):
        load_environment(tmp_path / "broken.hdr")
    with pytest.raises(UserError, match="no environment maps"):
        find_environments(tmp_path / "nothing")
    with pytest.raises(UserError, match="black"):
        Environment.from_map(np.zeros((H, W, 3)))
