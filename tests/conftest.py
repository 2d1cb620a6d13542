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
