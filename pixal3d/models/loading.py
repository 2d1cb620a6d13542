"""Checkpoint files: one model is ``{stem}.json`` (``{"name": <class>, "args": {...}}``) + ``{stem}.safetensors``.

This is the official layout of every network of TRELLIS.2 / Pixal3D (``ckpts/<stem>.{json,safetensors}``)
and the layout this project writes (:func:`save_model`).

How a checkpoint is loaded (:func:`load_model`) — the contract for model-class authors
-------------------------------------------------------------------------------------
1. **Build on meta.** The class is instantiated from the JSON ``args`` under ``torch.device('meta')``:
   no memory, no random numbers. Constructors must therefore not read tensor *values*.
2. **Strict key check** against the safetensors header (no tensor data read): every key of the
   model's ``state_dict`` must be in the file with the same shape and a compatible dtype (any floating
   type for a floating tensor, else the same type), and the file may hold nothing else — except the keys in :data:`RECOMPUTED_KEYS` (``rope_phases``), which may be present or
   absent and whose stored values are ignored. Otherwise one :class:`~pixal3d.errors.UserError`
   names the checkpoint and the first mismatches.
3. **Lazy, typed reads.** Tensors are read one at a time (memory-mapped by default, so a tensor
   whose dtype and device already match is not even copied) and converted to the dtype the class
   gave that parameter or buffer (bf16 flow blocks, fp32 embedders, fp16 decoder trunks ...), then
   put in place with ``load_state_dict(assign=True)``. A caller may force one floating ``dtype``
   for all floating tensors instead. A floating tensor holding NaN or Inf is refused, named.
   **CPU fallback:** on the CPU, float16 tensors are loaded as
   float32 unless a dtype is forced (CPU float16 kernels are missing or an order of magnitude slower).
4. **Compute dtype.** A module that keeps its activation dtype in a ``torch.dtype`` instance
   attribute named ``dtype`` (the flows' block dtype, the decoders' fp16 trunk) has it rewritten with
   the same mapping as its parameters when step 3 changes a dtype, so its casts still match its weights.
5. **Derived buffers.** Buffers not read from the file (non-persistent ones, and those in
   :data:`RECOMPUTED_KEYS`) are still on ``meta`` after step 3. Every module that defines
   ``init_buffers(self, device: torch.device) -> None`` has it called (children before parents) and
   must (re)create its derived buffers on ``device`` there. Buffers a class computes itself in an
   overridden ``_load_from_state_dict`` are moved to the target device. A tensor still on ``meta``
   afterwards is an error naming it.

:func:`check_checkpoint` does steps 1–2 only: it is what ``pixal3d inspect`` runs, fast even for
multi-GB files.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from pixal3d.devices import select_device
from pixal3d.errors import UserError
from pixal3d.models.registry import build_model
from pixal3d.utils.files import atomic_output, read_json

#: state-dict entries (last name component) that are derived data: never required, never read
RECOMPUTED_KEYS = frozenset({"rope_phases"})

#: safetensors dtype names → torch dtypes
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

#: how many mismatches of each kind an error message lists
MISMATCH_LIMIT = 5

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def is_recomputed(key: str) -> bool:
    """Whether state-dict ``key`` is derived data that checkpoints need not (and do not) supply."""
    return key.rsplit(".", 1)[-1] in RECOMPUTED_KEYS


def checkpoint_stem(path: str | os.PathLike) -> Path:
    """``path`` without a ``.json`` / ``.safetensors`` suffix (accepts the stem itself)."""
    path = Path(path).expanduser()
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    return path


def checkpoint_files(stem: str | os.PathLike) -> tuple[Path, Path]:
    """The ``(json, safetensors)`` paths of checkpoint ``stem``."""
    stem = checkpoint_stem(stem)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header: dtype name (``'BF16'``, ``'F32'``...), shape, byte range."""

    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def torch_dtype(self) -> torch.dtype | None:
        return SAFETENSORS_DTYPES.get(self.dtype)


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse only the header of a ``.safetensors`` file (no tensor data is read).

    Returns ``(tensors, metadata, data_start)``: key → :class:`TensorInfo`, the free-form
    ``__metadata__`` strings, and the byte offset where tensor data begins.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise UserError(f"{path} is not a safetensors file (shorter than 8 bytes)")
            (size,) = struct.unpack("<Q", raw)
            file_size = os.fstat(f.fileno()).st_size
            if size > min(_MAX_HEADER_BYTES, file_size - 8):
                raise UserError(f"{path} is not a safetensors file (bad header length {size})")
            header = json.loads(f.read(size))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for key, entry in header.items():
        try:
            info = TensorInfo(str(entry["dtype"]), tuple(int(s) for s in entry["shape"]),
                              (int(entry["data_offsets"][0]), int(entry["data_offsets"][1])))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UserError(f"{path}: malformed header entry for {key!r}") from exc
        dtype = info.torch_dtype
        if info.offsets[1] < info.offsets[0] or (
                dtype is not None and info.offsets[1] - info.offsets[0] != info.numel * dtype.itemsize):
            raise UserError(f"{path}: header entry {key!r} has a byte range that does not match its shape and dtype")
        tensors[key] = info
    data_end = 8 + size + max((info.offsets[1] for info in tensors.values()), default=0)
    if data_end > file_size:
        raise UserError(f"{path} is truncated: {file_size} bytes, its header needs {data_end} (download it again)")
    return tensors, metadata, 8 + size


@dataclass
class Checkpoint:
    """A checkpoint on disk: its class ``name`` and ``args`` and the tensor inventory of its header."""

    stem: Path
    name: str
    args: dict
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def json_path(self) -> Path:
        return checkpoint_files(self.stem)[0]

    @property
    def weights_path(self) -> Path:
        return checkpoint_files(self.stem)[1]

    @property
    def num_params(self) -> int:
        """Number of stored scalars, derived entries (``rope_phases``) excluded."""
        return sum(info.numel for key, info in self.tensors.items() if not is_recomputed(key))

    def dtype_counts(self) -> dict[str, int]:
        """Stored scalars per safetensors dtype name (derived entries excluded), largest first."""
        counts: dict[str, int] = {}
        for key, info in self.tensors.items():
            if not is_recomputed(key):
                counts[info.dtype] = counts.get(info.dtype, 0) + info.numel
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def read_model_config(stem: str | os.PathLike) -> tuple[str, dict]:
    """``(name, args)`` from ``{stem}.json``; :class:`UserError` if it is missing or malformed."""
    json_path, _ = checkpoint_files(stem)
    config = read_json(json_path, "checkpoint config")
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise UserError(f"checkpoint config {json_path} must be a JSON object with a string \"name\"")
    args = config.get("args", {})
    if not isinstance(args, dict):
        raise UserError(f"checkpoint config {json_path}: \"args\" must be a JSON object")
    return config["name"], args


def open_checkpoint(stem: str | os.PathLike) -> Checkpoint:
    """Read the JSON and the safetensors header of checkpoint ``stem`` (``.json``/``.safetensors`` suffix allowed)."""
    stem = checkpoint_stem(stem)
    name, args = read_model_config(stem)
    weights = checkpoint_files(stem)[1]
    if not weights.is_file():
        raise UserError(f"checkpoint weights {weights} not found (its config {checkpoint_files(stem)[0].name} is there)")
    tensors, metadata, _ = read_safetensors_header(weights)
    return Checkpoint(stem, name, args, tensors, metadata)


@dataclass
class Mismatches:
    """Differences between a model's state dict and a checkpoint (derived entries excluded)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model
    wrong_dtypes: list[tuple[str, str, str]] = field(default_factory=list)  # key, file dtype, model dtype

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shapes or self.wrong_dtypes)

    def summary(self, limit: int = MISMATCH_LIMIT) -> str:
        """One line listing the first ``limit`` mismatches of each kind."""

        def first(items: list[str], total: int) -> str:
            more = f" (+{total - limit} more)" if total > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {first(self.missing, len(self.missing))}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {first(self.unexpected, len(self.unexpected))}")
        if self.wrong_shapes:
            shapes = [f"{k} file {list(f)} vs model {list(m)}" for k, f, m in self.wrong_shapes]
            parts.append(f"{len(shapes)} wrong shape(s): {first(shapes, len(shapes))}")
        if self.wrong_dtypes:
            dtypes = [f"{k} file {f} vs model {m}" for k, f, m in self.wrong_dtypes]
            parts.append(f"{len(dtypes)} wrong dtype(s): {first(dtypes, len(dtypes))}")
        return "; ".join(parts) or "no mismatches"


def _dtype_fits(stored: str, model: torch.dtype) -> bool:
    """Whether a tensor stored as safetensors dtype ``stored`` may be loaded into a ``model`` tensor: any
    floating type into a floating one (converted), otherwise exactly the same type."""
    dtype = SAFETENSORS_DTYPES.get(stored)
    if dtype is None:
        return False
    if model.is_floating_point:
        return dtype.is_floating_point
    return dtype == model


def compare_state(expected: Mapping[str, tuple[int, ...]], stored: Mapping[str, tuple[int, ...]],
                  expected_dtypes: Mapping[str, torch.dtype] | None = None,
                  stored_dtypes: Mapping[str, str] | None = None) -> Mismatches:
    """Key/shape (and, given both dtype maps, dtype-kind) differences between a model (``expected``) and a
    file (``stored``), both key → shape; dtypes key → torch dtype / safetensors dtype name."""
    result = Mismatches()
    for key, shape in expected.items():
        if is_recomputed(key):
            continue
        if key not in stored:
            result.missing.append(key)
        elif tuple(stored[key]) != tuple(shape):
            result.wrong_shapes.append((key, tuple(stored[key]), tuple(shape)))
        elif expected_dtypes is not None and stored_dtypes is not None and key in expected_dtypes \
                and not _dtype_fits(stored_dtypes[key], expected_dtypes[key]):
            result.wrong_dtypes.append((key, stored_dtypes[key], str(expected_dtypes[key]).replace("torch.", "")))
    result.unexpected = [key for key in stored if key not in expected and not is_recomputed(key)]
    return result


def build_on_meta(name: str, args: dict) -> nn.Module:
    """The model class ``name`` built from ``args`` on the meta device (no memory, no RNG use)."""
    return build_model(name, args, device="meta")


def model_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """State-dict key → shape of ``model`` (works on meta models)."""
    return {key: tuple(t.shape) for key, t in model.state_dict(keep_vars=True).items()}


def check_checkpoint(checkpoint: Checkpoint | str | os.PathLike) -> tuple[nn.Module, Mismatches]:
    """Build the checkpoint's class on meta and compare its keys/shapes with the file header.

    Reads no tensor data. Returns the meta model (for its dtypes and parameter count) and the mismatches.
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = open_checkpoint(checkpoint)
    model = build_on_meta(checkpoint.name, checkpoint.args)
    stored = {key: info.shape for key, info in checkpoint.tensors.items()}
    dtypes = {key: t.dtype for key, t in model.state_dict(keep_vars=True).items()}
    return model, compare_state(model_shapes(model), stored, dtypes,
                                {key: info.dtype for key, info in checkpoint.tensors.items()})


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return select_device(str(device))


def _target_dtype(current: torch.dtype, forced: torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype a floating tensor of the class's dtype ``current`` gets on ``device``."""
    if not current.is_floating_point:
        return current
    if forced is not None:
        return forced
    if current == torch.float16 and device.type == "cpu":
        return torch.float32
    return current


@contextmanager
def _tensor_reader(path: Path, tensors: Mapping[str, TensorInfo], mmap: bool) -> Iterator[Callable[[str], torch.Tensor]]:
    """Yield ``read(key) -> CPU tensor``: memory-mapped views, or plain positioned reads when ``mmap`` is off."""
    if mmap:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            yield f.get_tensor
        return
    _, _, data_start = read_safetensors_header(path)
    with open(path, "rb") as f:

        def read(key: str) -> torch.Tensor:
            info = tensors[key]
            dtype = info.torch_dtype
            if dtype is None:
                raise UserError(f"{path}: tensor {key!r} has unsupported dtype {info.dtype}")
            f.seek(data_start + info.offsets[0])
            buffer = bytearray(f.read(info.offsets[1] - info.offsets[0]))
            if not buffer:
                return torch.empty(info.shape, dtype=dtype)
            return torch.frombuffer(buffer, dtype=dtype).reshape(info.shape)

        yield read


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether a tensor holds no NaN/Inf (non-floating tensors always do)."""
    if not tensor.is_floating_point():
        return True
    if tensor.dtype.itemsize == 1:  # float8: isfinite is not implemented for every variant
        tensor = tensor.float()
    return bool(torch.isfinite(tensor).all())


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise UserError(f"unknown floating dtype {dtype!r} (use float32, bfloat16 or float16)")
    return value


def _finish(model: nn.Module, device: torch.device, forced: torch.dtype | None, where: str) -> None:
    """Steps 3–5 of the module docstring after the file tensors are assigned."""
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for key, tensor in store.items():
                if tensor is None or tensor.is_meta:
                    continue
                target = _target_dtype(tensor.dtype, forced, device)
                if target != tensor.dtype or tensor.device != device:
                    converted = tensor.detach().to(device=device, dtype=target)
                    if isinstance(tensor, nn.Parameter):
                        converted = nn.Parameter(converted, requires_grad=tensor.requires_grad)
                    store[key] = converted
    for module in reversed(list(model.modules())):
        init = getattr(module, "init_buffers", None)
        if callable(init):
            init(device)
    for module in model.modules():
        for key, tensor in list(module._buffers.items()):
            if tensor is not None and not tensor.is_meta and tensor.device != device:
                module._buffers[key] = tensor.to(device)
        current = vars(module).get("dtype")
        if isinstance(current, torch.dtype) and current.is_floating_point:
            target = _target_dtype(current, forced, device)
            if target != current:
                module.dtype = target
    left = [key for key, t in model.state_dict(keep_vars=True).items() if t.is_meta]
    left += [f"{name} (non-persistent)" for name, t in model.named_buffers() if t.is_meta and name not in left]
    if left:
        raise UserError(f"{where}: {type(model).__name__} left tensors uninitialised after loading "
                        f"({', '.join(left[:MISMATCH_LIMIT])}); the class must recreate them in init_buffers(device)")


def load_model(
    stem: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    strict: bool = True,
    mmap: bool = True,
    check_finite: bool = True,
) -> nn.Module:
    """Build and load checkpoint ``stem`` (``{stem}.json`` + ``{stem}.safetensors``); returns the model in eval mode.

    ``device``: where the weights go (default CPU). ``dtype``: force every floating tensor to this
    dtype (default: each keeps the dtype its class gives it, float16 → float32 on the CPU).
    ``strict``: refuse any missing/unexpected key or wrong shape (derived ``rope_phases`` excepted)
    with one :class:`UserError`; with ``strict=False`` mismatching entries are skipped and, if keys
    are missing, the model is built for real so they keep the class's initialisation (draws RNG).
    ``mmap``: read tensors through a memory map (no copy when dtype and device already match);
    off, each tensor is read with a plain file read. Either way one tensor is read at a time.
    ``check_finite``: refuse a floating tensor holding NaN or Inf with one :class:`UserError` naming it
    (a corrupt file or a diverged run would otherwise generate garbage silently).
    A floating parameter stored as an integer type (or the reverse) counts as a mismatch like a wrong shape.
    """
    checkpoint = open_checkpoint(stem)
    device = _resolve_device(device)
    forced = _as_dtype(dtype)
    where = f"checkpoint {checkpoint.weights_path}"
    model, mismatches = check_checkpoint(checkpoint)
    if not mismatches.ok:
        if strict:
            raise UserError(f"{where} does not fit {checkpoint.name}: {mismatches.summary()}")
        if mismatches.missing:
            model = build_model(checkpoint.name, checkpoint.args, device=device)
    skip = {key for key, _, _ in mismatches.wrong_shapes} | {key for key, _, _ in mismatches.wrong_dtypes}
    targets = model.state_dict(keep_vars=True)
    state = {}
    with _tensor_reader(checkpoint.weights_path, checkpoint.tensors, mmap) as read:
        for key, target in targets.items():
            if is_recomputed(key) or key in skip or key not in checkpoint.tensors:
                continue
            want = _target_dtype(target.dtype, forced, device)
            tensor = read(key)
            if check_finite and not _all_finite(tensor):
                bad = int((~torch.isfinite(tensor.float())).sum())
                raise UserError(f"{where}: tensor {key!r} holds {bad} NaN/Inf value(s) — the checkpoint is corrupt "
                                f"(or came from a diverged training run); download or export it again")
            state[key] = tensor.to(device=device, dtype=want)
    model.load_state_dict(state, strict=False, assign=True)
    del state
    _finish(model, device, forced, where)
    return model.eval()


def save_model(model: nn.Module | Mapping[str, torch.Tensor], stem: str | os.PathLike, name: str, args: dict) -> Path:
    """Write ``{stem}.safetensors`` (the state dict, derived ``rope_phases`` left out) then ``{stem}.json``.

    Each file appears whole or not at all; the JSON is written last, so a folder never lists a
    checkpoint whose weights are incomplete. Tensors are stored in their current dtype. Returns the stem.
    """
    stem = checkpoint_stem(stem)
    config = json.dumps({"name": name, "args": args}, indent=2) + "\n"
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in state.items():
        if is_recomputed(key):
            continue
        if tensor.is_meta:
            raise ValueError(f"cannot save {key}: it is on the meta device (never loaded)")
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen:  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(storage)
        tensors[key] = tensor
    json_path, weights_path = checkpoint_files(stem)
    with atomic_output(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    with atomic_output(json_path) as tmp:
        tmp.write_text(config)
    return stem
