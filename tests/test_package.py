"""The package's top level."""


def test_top_level_exports_load_lazily():
    import subprocess
    import sys

    code = "import sys, pixal3d; assert 'torch' not in sys.modules; from pixal3d import Pixal3DPipeline; print(Pixal3DPipeline.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "Pixal3DPipeline"
