"""Optional int8 inference of the flow transformers on the CPU (PyTorch's own dynamic quantisation).

:func:`quantize_flow_int8` swaps every ``nn.Linear`` of a flow for PyTorch's dynamically quantised int8
Linear (``torch.ao.quantization.quantize_dynamic``): weights are stored as int8 with one scale per output
channel, activations are quantised per batch on the fly, products accumulate in int32 and come back as
float32. Attention products, norms and everything outside the Linear layers stay float32, and so do the
VAE decoders and the image encoder. The numbers change (it is opt-in, ``--quantize int8``); what it costs in
fidelity is measured in ``bench/quantize.py`` (docs/benchmarks.md). CPU only: PyTorch has no CUDA/MPS kernels for it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pixal3d.errors import UserError

#: what ``--quantize`` accepts
QUANTIZE_MODES = ("none", "int8")


def quantize_flow_int8(model: nn.Module) -> nn.Module:
    """``model`` (float32, CPU) with its ``nn.Linear`` layers dynamically quantised to int8 (in place where
    possible; use the returned module). Its attributes (``resolution``, ``out_channels`` …) are kept."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise UserError("int8 quantisation runs on the CPU only; drop --quantize or use --device cpu")
    with warnings.catch_warnings():  # the eager API is deprecated in favour of torchao, but still PyTorch's own
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model.float().eval(), {nn.Linear}, dtype=torch.qint8,
                                                           inplace=True)
    if hasattr(quantized, "dtype") and isinstance(quantized.dtype, torch.dtype):
        quantized.dtype = torch.float32  # blocks compute in float32 around the quantised Linear layers
    return quantized


def stage_transform(mode: str | None):
    """The per-stage load hook for ``mode`` (``None``/``"none"``: none; ``"int8"``: flows quantised)."""
    if mode in (None, "none"):
        return None
    if mode not in QUANTIZE_MODES:
        raise UserError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")

    def transform(key: str, model: nn.Module) -> nn.Module:
        return quantize_flow_int8(model) if "flow_model" in key else model

    return transform
