"""Pytest configuration: thread count and the ``reference`` fixture loader."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import Fixture

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference():
    """``reference(name)`` loads ``../shared/reference/<name>.{safetensors,json}`` (cached)."""
    cache: dict[str, Fixture] = {}

    def load(name: str) -> Fixture:
        if name not in cache:
            cache[name] = Fixture(name)
        return cache[name]

    return load


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for modules of tiny sparse GEMMs (avoids oversubscription stalls on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(reference, tmp_path_factory):
    """The official tiny end-to-end configuration as a model folder (random weights, official layout)."""
    from tests.pipelines.tiny_folder import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "Pixal3D", reference("pipeline_e2e_tiny"),
                               reference("dinov3_tiny"), reference("naf_tiny"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A built dataset of 3 synthetic assets × 2 views (32³ voxels, 64² images)."""
    from pixal3d.data import build as B
    from pixal3d.data.synth import synthesize

    root = tmp_path_factory.mktemp("train_data")
    synthesize(3, root / "synth", seed=11, workers=1, sheet=False)
    B.build_dataset(root / "synth", root / "data", B.BuildConfig(views=2, resolution=32, image_size=64, seed=0), workers=1)
    return root / "data"
