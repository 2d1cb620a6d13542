"""The modulated transformer block of the flow models (official ``ModulatedTransformerCrossBlock``).

Works on dense token tensors ``[B, L, C]`` and on SparseTensors (feats ``[N, C]``); per-item
modulation vectors ``[B, C]`` broadcast to the item's tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.utils.checkpoint
from torch import nn

from pixal3d.models.modules.attention import CrossAttention, ProjectionCrossAttention, SelfAttention
from pixal3d.models.modules.norm import LayerNorm32
from pixal3d.models.modules.timestep import TimestepEmbedder
from pixal3d.core.sparse_tensor import SparseTensor

IMAGE_ATTN_MODES = ("proj", "cross")
#: the condition key of the per-block projections of :meth:`FlowTransformer.prepare_condition`
PROJECTED_KEY = "proj_by_block"
#: the most memory :meth:`FlowTransformer.prepare_condition` keeps per condition (official shape 512 stage, 4096
#: tokens × 30 blocks × 1536 bf16: 377 MB; the 1024 stage's larger token sets fall back to per-step projections)
PROJECTION_CACHE_BYTES = 1 << 30


class FeedForwardNet(nn.Module):
    """Linear(C → hidden) → GELU(tanh) → Linear(hidden → C); keys ``mlp.0``, ``mlp.2``. ``[..., C]`` → ``[..., C]``."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def _per_token(vec: torch.Tensor, x: torch.Tensor | SparseTensor) -> torch.Tensor:
    """Per-item ``vec [B, C]`` shaped to broadcast against the tokens of ``x``."""
    if isinstance(x, SparseTensor):
        return vec if vec.shape[0] == 1 else x.per_item(vec)
    return vec.unsqueeze(1)


class ModulatedTransformerCrossBlock(nn.Module):
    """AdaLN-modulated block: self-attention (RoPE) → image attention → FFN, each residual.

    * ``image_attn_mode='proj'`` (Pixal3D): keys ``cross_attn.cross_attn_block.*`` + ``cross_attn.proj_linear.*``;
      ``context = {'global': [B, M, ctx], 'proj': row-aligned proj features}``.
    * ``image_attn_mode='cross'`` (TRELLIS.2): keys ``cross_attn.*``; ``context`` = dense ``[B, M, ctx]``.

    With ``share_mod`` the block owns ``modulation [6C]`` added to the model-level modulation ``mod [B, 6C]``;
    otherwise it owns ``adaLN_modulation`` (SiLU → Linear(C → 6C)) applied to the time embedding ``mod [B, C]``.
    Chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp. Norms: ``norm1``/``norm3``
    without affine, ``norm2`` affine, eps 1e-6, float32.
    """

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        share_mod: bool = False,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
        image_attn_mode: str = "proj",
        proj_in_channels: int | None = None,
    ):
        super().__init__()
        if image_attn_mode not in IMAGE_ATTN_MODES:
            raise ValueError(f"image_attn_mode must be one of {IMAGE_ATTN_MODES}, got {image_attn_mode!r}")
        self.share_mod = share_mod
        self.image_attn_mode = image_attn_mode
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, num_heads, qk_rms_norm=qk_rms_norm)
        if image_attn_mode == "proj":
            self.cross_attn = ProjectionCrossAttention(
                channels, ctx_channels, num_heads, proj_in_channels or ctx_channels, qk_rms_norm=qk_rms_norm_cross
            )
        else:
            self.cross_attn = CrossAttention(channels, ctx_channels, num_heads, qk_rms_norm=qk_rms_norm_cross)
        self.mlp = FeedForwardNet(channels, mlp_ratio)
        if share_mod:
            self.modulation = nn.Parameter(torch.zeros(6 * channels))
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(
        self,
        x: torch.Tensor | SparseTensor,
        mod: torch.Tensor,
        context: torch.Tensor | Mapping[str, torch.Tensor | SparseTensor],
        rope: torch.Tensor | None = None,
    ) -> torch.Tensor | SparseTensor:
        """``x`` dense ``[B, L, C]`` or SparseTensor; ``mod`` ``[B, 6C]`` (share_mod) or ``[B, C]``; same type out."""
        if self.share_mod:
            mods = (self.modulation + mod).to(mod.dtype)
        else:
            mods = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (_per_token(m, x) for m in mods.chunk(6, dim=1))
        sparse = isinstance(x, SparseTensor)
        feats = x.feats if sparse else x

        h = self.norm1(feats) * (1 + scale_msa) + shift_msa
        h = self.self_attn(x.replace(h) if sparse else h, rope)
        feats = feats + (h.feats if sparse else h) * gate_msa

        h = self.norm2(feats)
        h = self.cross_attn(x.replace(h) if sparse else h, context)
        feats = feats + (h.feats if sparse else h)

        h = self.norm3(feats) * (1 + scale_mlp) + shift_mlp
        feats = feats + self.mlp(h) * gate_mlp
        return x.replace(feats) if sparse else feats


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype_from_name(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


class FlowTransformer(nn.Module):
    """Shared trunk of the official flow models (time embedding, shared modulation, blocks, I/O layers).

    Subclasses tokenise their input and call :meth:`run_trunk`. With ``dtype`` ``bfloat16``/``float16``
    only the ``nn.Linear`` weights and biases inside ``blocks`` use it; ``input_layer``, ``t_embedder``,
    ``adaLN_modulation``, ``out_layer``, norm affines, RMS gammas and ``modulation`` stay float32.
    Activations enter the blocks in ``dtype`` and leave them in float32.
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        cond_channels: int,
        out_channels: int,
        num_blocks: int,
        num_heads: int | None = None,
        num_head_channels: int = 64,
        mlp_ratio: float = 4,
        pe_mode: str = "rope",
        rope_freq: tuple[float, float] = (1.0, 10000.0),
        dtype: str = "float32",
        use_checkpoint: bool = False,
        share_mod: bool = False,
        initialization: str = "vanilla",
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
        image_attn_mode: str = "proj",
        proj_in_channels: int | None = None,
    ):
        super().__init__()
        if pe_mode != "rope":
            raise ValueError(f"pe_mode {pe_mode!r} is not supported (every released flow uses 'rope')")
        if initialization not in ("vanilla", "scaled"):
            raise ValueError(f"initialization must be 'vanilla' or 'scaled', got {initialization!r}")
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.out_channels = out_channels
        self.num_blocks = num_blocks
        self.num_heads = num_heads or model_channels // num_head_channels
        self.head_dim = model_channels // self.num_heads
        self.mlp_ratio = mlp_ratio
        self.pe_mode = pe_mode
        self.rope_freq = (float(rope_freq[0]), float(rope_freq[1]))
        self.use_checkpoint = use_checkpoint
        self.share_mod = share_mod
        self.initialization = initialization
        self.image_attn_mode = image_attn_mode
        self.proj_in_channels = proj_in_channels or cond_channels
        self.dtype = _dtype_from_name(dtype)

        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 6 * model_channels))
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList(
            ModulatedTransformerCrossBlock(
                model_channels, cond_channels, self.num_heads, mlp_ratio, share_mod=share_mod,
                qk_rms_norm=qk_rms_norm, qk_rms_norm_cross=qk_rms_norm_cross,
                image_attn_mode=image_attn_mode, proj_in_channels=self.proj_in_channels,
            )
            for _ in range(num_blocks)
        )
        self.out_layer = nn.Linear(model_channels, out_channels)
        self.initialize_weights()
        if self.dtype != torch.float32:
            for module in self.blocks.modules():
                if isinstance(module, nn.Linear):
                    module.to(self.dtype)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Training initialisation of the official ``initialization`` scheme (checkpoints overwrite it)."""
        if self.initialization == "vanilla":
            linear_init = nn.init.xavier_uniform_
        else:
            std = (2.0 / (5.0 * self.model_channels)) ** 0.5
            linear_init = lambda w: nn.init.normal_(w, std=std)  # noqa: E731
        for module in self.modules():
            if isinstance(module, nn.Linear):
                linear_init(module.weight)
                nn.init.zeros_(module.bias)
        if self.initialization == "scaled":
            out_std = 1.0 / (5 * self.num_blocks * self.model_channels) ** 0.5
            for block in self.blocks:
                cross = block.cross_attn.cross_attn_block if self.image_attn_mode == "proj" else block.cross_attn
                for layer in (block.self_attn.to_out, cross.to_out, block.mlp.mlp[2]):
                    nn.init.normal_(layer.weight, std=out_std)
            nn.init.normal_(self.input_layer.weight, std=1.0 / self.in_channels**0.5)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for head in [self.adaLN_modulation] if self.share_mod else [b.adaLN_modulation for b in self.blocks]:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        nn.init.zeros_(self.out_layer.weight)
        nn.init.zeros_(self.out_layer.bias)

    def _cast_cond(self, cond):
        """Condition in the block dtype: dense tensor, SparseTensor, or a mapping/tuple ``(global, proj)``."""
        if isinstance(cond, SparseTensor):
            return cond.to(self.dtype)
        if isinstance(cond, torch.Tensor):
            return cond.to(self.dtype)
        if isinstance(cond, Mapping):
            return {k: self._cast_cond(v) for k, v in cond.items()}
        if isinstance(cond, (tuple, list)) and self.image_attn_mode == "proj" and len(cond) == 2:
            return {"global": self._cast_cond(cond[0]), "proj": self._cast_cond(cond[1])}
        raise TypeError(f"unsupported condition type {type(cond).__name__}")

    def prepare_condition(self, cond, budget_bytes: int = PROJECTION_CACHE_BYTES):
        """``cond`` with every block's ``proj_linear`` of the pixel-aligned features computed once, for a sampler
        that calls the flow with the same condition at every step (:meth:`FlowEulerGuidanceIntervalSampler.sample`).

        The condition does not change between steps, so neither does that projection (a ``[N, proj_in] →
        [N, C]`` Linear per block, ≈ 6 % of an official block's FLOPs): computing it once gives the very tensors
        the steps would compute, so results are bit-identical. Skipped (``cond`` returned as is) for
        cross-attention flows, in training, or when the projections would exceed ``budget_bytes`` (blocks × N × C).
        """
        if (self.image_attn_mode != "proj" or not isinstance(cond, Mapping) or "proj" not in cond
                or PROJECTED_KEY in cond or (self.training and torch.is_grad_enabled())):
            return cond
        proj = self._cast_cond(cond["proj"])
        feats = proj.feats if isinstance(proj, SparseTensor) else proj
        size = feats[..., 0].numel() * self.model_channels * feats.element_size() * len(self.blocks)
        if size > budget_bytes:
            return cond
        with torch.no_grad():
            projected = tuple(block.cross_attn.proj_linear(feats) for block in self.blocks)
        return {**cond, PROJECTED_KEY: projected}

    def run_trunk(
        self, h: torch.Tensor | SparseTensor, t: torch.Tensor, cond, rope: torch.Tensor | None
    ) -> torch.Tensor | SparseTensor:
        """Embedded tokens ``h`` (float32, dense ``[B, L, C]`` or SparseTensor) → normalised float32 tokens.

        ``t`` ``[B]`` is the ×1000 model time; ``cond`` as documented on the subclasses; ``rope`` the
        (cos, sin) phases row-aligned with the tokens. Returns the tokens after the blocks and the
        tail LayerNorm (no affine, eps 1e-5), before ``out_layer``.
        """
        if self.image_attn_mode == "proj" and isinstance(cond, torch.Tensor):
            raise TypeError("a proj-mode flow needs cond = {'global': [B, M, C], 'proj': features}, got a tensor")
        t_emb = self.t_embedder(t)
        if self.share_mod:
            t_emb = self.adaLN_modulation(t_emb)
        t_emb = t_emb.to(self.dtype)
        h = h.to(self.dtype)
        projected = cond.get(PROJECTED_KEY) if isinstance(cond, Mapping) else None
        if projected is not None:
            cond = {k: v for k, v in cond.items() if k != PROJECTED_KEY}
        cond = self._cast_cond(cond)
        checkpoint = self.use_checkpoint and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            context = cond if projected is None else {**cond, "proj_projected": projected[i]}
            if checkpoint:
                h = torch.utils.checkpoint.checkpoint(block, h, t_emb, context, rope, use_reentrant=False)
            else:
                h = block(h, t_emb, context, rope)
        h = h.to(torch.float32)
        feats = h.feats if isinstance(h, SparseTensor) else h
        feats = torch.nn.functional.layer_norm(feats, feats.shape[-1:])
        return h.replace(feats) if isinstance(h, SparseTensor) else feats
