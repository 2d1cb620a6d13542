"""Transformer parts shared by the flow models: time embedding, norms, RoPE, attention, the block."""

from pixal3d.models.modules.attention import (
    CrossAttention,
    ProjectionCrossAttention,
    SelfAttention,
    attention,
    varlen_attention,
)
from pixal3d.models.modules.blocks import FeedForwardNet, FlowTransformer, ModulatedTransformerCrossBlock
from pixal3d.models.modules.norm import LayerNorm32, MultiHeadRMSNorm
from pixal3d.models.modules.rope import RotaryEmbedder3D
from pixal3d.models.modules.timestep import TimestepEmbedder, timestep_sinusoid

__all__ = [
    "CrossAttention",
    "FeedForwardNet",
    "FlowTransformer",
    "LayerNorm32",
    "ModulatedTransformerCrossBlock",
    "MultiHeadRMSNorm",
    "ProjectionCrossAttention",
    "RotaryEmbedder3D",
    "SelfAttention",
    "TimestepEmbedder",
    "attention",
    "timestep_sinusoid",
    "varlen_attention",
]
