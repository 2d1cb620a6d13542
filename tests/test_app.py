import pytest

import app
from pixal3d.errors import UserError


def test_app_builds_without_launching(tmp_path):
    gr = pytest.importorskip("gradio")
    demo = app.build_app(device="cpu", out_dir=tmp_path)
    assert isinstance(demo, gr.Blocks)


def test_bad_requests_are_user_errors(tmp_path):
    cache = app.PipelineCache("cpu", False)
    args = dict(model=str(tmp_path), seed=1, fov_degrees=0, resolution="model default", steps=12, guidance=7.5,
                texture_size=1024, decimation_target=10000, out_dir=tmp_path / "out")
    with pytest.raises(UserError, match="upload an image"):
        app.generate(cache, None, **args)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    with pytest.raises(UserError, match="no model folder"):
        app.generate(cache, str(image), **args)
    assert not (tmp_path / "out").exists()
