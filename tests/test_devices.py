import pytest
import torch

from pixal3d.devices import available_devices, select_device
from pixal3d.errors import UserError


def test_cpu_always_available_and_last():
    assert available_devices()[-1] == "cpu"


def test_explicit_name_beats_environment(monkeypatch):
    monkeypatch.setenv("PIXAL3D_DEVICE", "cpu")
    assert select_device() == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")


def test_default_is_best_available(monkeypatch):
    monkeypatch.delenv("PIXAL3D_DEVICE", raising=False)
    assert select_device().type == available_devices()[0]


@pytest.mark.parametrize("name", ["tpu", "nonsense:3"])
def test_unknown_or_unavailable_device_is_a_user_error(name):
    with pytest.raises(UserError):
        select_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_a_user_error():
    with pytest.raises(UserError, match="not available"):
        select_device("cuda")
