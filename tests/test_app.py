"""The web app's requests in-process (pixal3d.web.service) on the tiny random-weight model, and the page's build.
The real-browser and load tests are in tests/app/."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixal3d.errors import UserError
from pixal3d.web.service import AppConfig, Service, Settings, find_models, resolve_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: the tiny networks make fragments smaller than the default floater threshold: keep them all
FAST = dict(steps=1, texture_size=256, face_budget=4000, min_part_area=0, resolution="1024")


@pytest.fixture(scope="module")
def service(tiny_model, tmp_path_factory):
    models, notes = find_models(str(tiny_model))
    assert list(models) == ["Pixal3D"] and not notes
    return Service(AppConfig(models=models, out_dir=tmp_path_factory.mktemp("app_out"), device="cpu",
                             turntable_frames=6, turntable_size=64))


def test_page_builds_with_a_model_dropdown_and_no_server_path(service, tiny_model):
    gr = pytest.importorskip("gradio")
    from pixal3d.web.ui import build_app

    demo = build_app(service)
    assert isinstance(demo, gr.Blocks)
    config = demo.get_config_file()
    by_id = {c["props"].get("elem_id"): c for c in config["components"] if c.get("props", {}).get("elem_id")}
    assert by_id["model"]["type"] == "dropdown"
    assert [c[0] for c in by_id["model"]["props"]["choices"]] == ["Pixal3D"]
    assert not [c for c in config["components"] if c["type"] == "textbox" and "model" in str(c["props"].get("label", "")).lower()]
    assert str(tiny_model) not in json.dumps(config, default=repr)  # a visitor never sees (or types) a server path
    for name in ("single", "multiview", "scene", "blend"):
        assert any(d.get("api_name") == name for d in config["dependencies"]), name


def test_model_folders_found_under_the_root(tiny_model, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(tiny_model, root / "pixal3d-small")
    shutil.copytree(tiny_model, root / "Other")
    (root / "dinov3-vitl16-pretrain-lvd1689m").mkdir()  # a component folder, not a pipeline
    shutil.copytree(tiny_model, root / "Broken")
    next((root / "Broken" / "ckpts").glob("*.safetensors")).unlink()
    models, notes = find_models(None, root)
    assert list(models) == ["pixal3d-small", "Other"]  # the default model first; the broken one left out
    assert len(notes) == 1 and notes[0].startswith("Broken:")
    assert find_models(None, tmp_path / "nothing") == ({}, [])
    with pytest.raises(UserError, match="not a model folder"):
        find_models(str(root / "dinov3-vitl16-pretrain-lvd1689m"))


def test_single_image_request(service):
    from tests.clients import assert_valid_gltf

    events = []
    outcome = service.single(str(EXAMPLES / "lamp.png"), Settings(formats=["obj", "ply", "stl"], **FAST),
                             lambda fraction, text: events.append((fraction, text)))
    assert_valid_gltf(outcome.glb)
    assert [p.name for p in outcome.downloads] == ["lamp_seed42.glb", "lamp_seed42_obj.zip", "lamp_seed42.ply",
                                                   "lamp_seed42.stl"]
    assert sorted(zipfile.ZipFile(outcome.downloads[1]).namelist()) == ["lamp_seed42.mtl", "lamp_seed42.obj",
                                                                        "lamp_seed42_basecolor.png"]
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for stage in ("preprocessing", "structure", "shape 512", "shape 1024", "texture", "decode", "export", "previews"):
        assert any(text.startswith(stage) for _, text in events), stage
    stages = [row[0] for row in outcome.timings]
    assert stages[:2] == ["preprocess + camera", "sparse structure"] and stages[-3:] == ["export", "previews", "total"]
    assert "`alpha`" in outcome.info and "**Seed:** 42" in outcome.info
    # the alignment view: the photo as the pipeline framed it (the crop of the preprocessing), the render over it
    from pixal3d.pipelines.pixal3d import prepare_image

    prepared = prepare_image(EXAMPLES / "lamp.png")
    photo = np.asarray(Image.open(outcome.photo).convert("RGB")).astype(int)
    conditioned = np.asarray(prepared.image).astype(int)
    assert photo.shape == conditioned.shape
    alpha = np.asarray(Image.open(EXAMPLES / "lamp.png").convert("RGBA").crop(prepared.info["crop_box"]))[..., 3]
    opaque = alpha == 255  # where the lamp is, the photo shows exactly what the pipeline saw
    assert opaque.sum() > 10_000
    assert np.abs(photo[opaque] - conditioned[opaque]).max() <= 2
    assert Image.open(outcome.alignment).size == Image.open(outcome.photo).size
    with Image.open(outcome.turntable) as gif:
        assert gif.n_frames == 6
    blended = service.blend(outcome.photo, outcome.overlay, 0.0)
    assert np.array_equal(np.asarray(Image.open(blended)), np.asarray(Image.open(outcome.photo).convert("RGB")))
    with pytest.raises(UserError, match="no longer available"):
        service.blend("/etc/hostname", outcome.overlay, 0.5)  # only this app's own results


def test_the_same_picture_again_reuses_its_preparation_and_gives_the_same_glb(service, tiny_model, tmp_path):
    lamp = str(EXAMPLES / "lamp.png")
    first = service.single(lamp, Settings(seed=3, **FAST))
    copy = tmp_path / "again.png"
    shutil.copy(lamp, copy)  # the same bytes under another name: the prepared picture (and its features) is reused
    prepared = service._prepared[1]
    second = service.single(str(copy), Settings(seed=3, **FAST))
    assert service._prepared[1] is prepared
    assert first.glb.read_bytes() == second.glb.read_bytes()  # bit for bit, cached features or not
    fresh = Service(AppConfig(models=service.config.models, out_dir=tmp_path / "fresh", device="cpu",
                              turntable_frames=2, turntable_size=32))
    assert fresh.single(lamp, Settings(seed=3, **FAST)).glb.read_bytes() == first.glb.read_bytes()
    drawn = service.single(lamp, Settings(random_seed=True, seed=1, **FAST))
    assert f"**Seed:** {drawn.seed}" in drawn.info and f"seed{drawn.seed}" in drawn.glb.name


def test_multiview_request(service):
    from tests.clients import assert_valid_gltf

    views = [str(EXAMPLES / "multiview" / f"mug_{a:03d}.png") for a in (0, 90)]
    outcome = service.multiview(views, "0, 90", 10, None, Settings(fov_degrees=40, **FAST))
    assert_valid_gltf(outcome.glb)
    assert "**Views:** 2" in outcome.info and "view 0 of 2 (fov 0.6981" in outcome.info
    assert Image.open(outcome.photo).size == (384, 384)
    with pytest.raises(UserError, match="1 azimuths for 2 views"):
        service.multiview(views, "0", 10, None, Settings(**FAST))
    with pytest.raises(UserError, match="azimuths"):
        service.multiview(views, "", 10, None, Settings(**FAST))
    cameras = EXAMPLES / "multiview" / "transforms.json"  # 4 frames for 2 views
    with pytest.raises(UserError, match="4 frames for 2 images"):
        service.multiview(views, None, 0, str(cameras), Settings(**FAST))


def test_scene_request(service, tmp_path):
    from tests.clients import assert_valid_gltf

    picture = tmp_path / "two.png"
    rgba = np.asarray(Image.open(EXAMPLES / "scene.png"))
    Image.fromarray(rgba[:, 320:]).save(picture)  # the mug and the car only: two objects
    outcome = service.scene(str(picture), None, Settings(**FAST))
    assert_valid_gltf(outcome.glb)
    assert "**Objects:** 2 (connected components; background: alpha)" in outcome.info
    assert [row[0] for row in outcome.timings][:3] == ["object object_00", "object object_01", "compose"]
    assert Image.open(outcome.photo).size == (448, 512)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"this is not an image"), "bad.png is not an image this app can read"),
    (lambda p: p.write_bytes(b""), "bad.png is empty"),
    (lambda p: Image.new("1", (8000, 6000)).save(p), "bad.png is 8000×6000 = 48 megapixels; this server accepts up to 40"),
    (lambda p: Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(p), "no object found"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 26_000_000), "bad.png is 26.0 MB; this server accepts images up to 25 MB"),
])
def test_bad_uploads_are_one_clear_line(service, tmp_path, make, fragment):
    bad = tmp_path / "bad.png"
    make(bad)
    with pytest.raises(UserError) as info:
        service.single(str(bad), Settings(**FAST))
    message = service.message(info.value, {bad: bad.name})
    assert fragment in message and str(tmp_path) not in message and "\n" not in message


def test_texture_size_and_face_budget_default_to_the_resolution():
    _, export, _, _ = resolve_settings(Settings())
    assert (export.texture_size, export.decimation_target) == (None, None)  # filled in from the asset's resolution
    _, export, _, _ = resolve_settings(Settings(texture_size="1024", face_budget=50_000))
    assert (export.texture_size, export.decimation_target) == (1024, 50_000)
    with pytest.raises(UserError, match="face budget must be at least 0"):
        resolve_settings(Settings(face_budget=-5))


def test_bad_settings_and_models(service, tmp_path):
    image = str(EXAMPLES / "lamp.png")
    for settings, fragment in [
        (Settings(model="../../etc", **FAST), "unknown model '../../etc'"),
        (Settings(**{**FAST, "steps": "abc"}), "steps must be a number"),
        (Settings(**{**FAST, "texture_size": 300}), "power of two"),
        (Settings(**{**FAST, "fov_degrees": 200}), "FOV must be between 0 and 180"),
        (Settings(**{**FAST, "resolution": "999"}), "resolution must be one of"),
        (Settings(**FAST, formats=["fbx"]), "unknown format fbx"),
    ]:
        with pytest.raises(UserError, match=fragment):
            service.single(image, settings)
    with pytest.raises(UserError, match="upload an image first"):
        service.single(None, Settings(**FAST))
    empty = Service(AppConfig(models={}, out_dir=tmp_path / "out"))
    with pytest.raises(UserError, match="no model folder is installed on this server"):
        empty.single(image, Settings())


def test_messages_hide_server_paths(service, tiny_model):
    message = service.message(UserError(f"{tiny_model} is broken; see {service.config.out_dir}/x/y.glb"))
    assert str(tiny_model) not in message and str(service.config.out_dir) not in message
    assert "model 'Pixal3D' is broken" in message


def test_app_flags(tmp_path):
    import app

    parser = app.build_parser()
    args = parser.parse_args([])
    assert (args.host, args.port, args.share, args.concurrency, args.model) == ("127.0.0.1", 7860, False, None, None)
    with pytest.raises(UserError, match="--concurrency must be at least 1"):
        app.make_service(parser.parse_args(["--concurrency", "0", "--output-dir", str(tmp_path)]))
    with pytest.raises(UserError, match="not found"):
        app.make_service(parser.parse_args(["--model", str(tmp_path / "none"), "--output-dir", str(tmp_path)]))
