"""The training loop shared by every trainer: data order, optimiser, EMA, mixed precision, checkpoints, logs.

Determinism. Model initialisation is seeded with ``seed`` on every rank (identical weights, no broadcast
needed). The data order is a function of ``(seed, step)`` only: global batch ``s`` is positions
``s·B … s·B+B−1`` of the stream of per-epoch permutations (:class:`GlobalBatchSampler`), and rank ``r`` of
``W`` takes the contiguous slice ``r·B/W …``. Every random draw of a training step (flow time, noise,
condition dropout, VAE posterior samples) comes from a generator seeded by ``(seed, step, item position in
the global batch)`` (:func:`item_generators`), so a run resumed from a checkpoint repeats an uninterrupted
run bit for bit, and a W-process run sees exactly the draws of a 1-process run with the same global batch.
Gradients are averaged across ranks with ``all_reduce`` (gloo on CPU, nccl on CUDA); every trainer's loss
is a mean of per-item losses, so equal local batches make the average equal the global-batch gradient.

Checkpoints are pipeline folders, ``DIR/ckpts/step_{N:07d}/`` (``pipeline.json`` + ``ckpts/`` with the
EMA weights of the trained stages and the stages of the base pipeline folder), plus ``trainer_state.pt``
(raw weights, EMA, optimiser and RNG state) in the same folder and a ``DIR/ckpts/latest`` pointer.

Crash safety. A checkpoint is written into a hidden temporary folder and renamed into place only when
complete, then ``latest`` is replaced atomically, so a run killed at any moment (even ``SIGKILL`` while
writing) leaves every ``step_*`` folder complete and ``latest`` naming one of them. Resuming from
``latest`` takes the pointer's checkpoint if it loads, otherwise the newest ``step_*`` folder that does
(said on stderr), and drops the rows of ``log.csv`` after its step (and a torn last row).
``DIR/log.csv`` holds step, loss terms, learning rate, gradient norm and samples/s; ``DIR/loss.png`` plots it.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import random
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from pixal3d.core.pipeline_config import PIPELINE_NAME, PipelineConfig
from pixal3d.errors import UserError, log
from pixal3d.models.loading import read_model_config
from pixal3d.models.pipeline_folder import (
    PIPELINE_FILE,
    PipelineFolder,
    StageWeights,
    open_pipeline_folder,
    write_pipeline_folder,
)
from pixal3d.models.registry import build_model
from pixal3d.training.config import TrainConfig
from pixal3d.utils.failpoints import failpoint
from pixal3d.utils.files import atomic_output

CKPT_DIR = "ckpts"
LATEST = "latest"
STATE_FILE = "trainer_state.pt"
LOG_FILE = "log.csv"
PLOT_FILE = "loss.png"


def step_dir_name(step: int) -> str:
    """``step_{N:07d}``: the folder of the checkpoint after ``step`` optimiser steps."""
    return f"step_{step:07d}"


def item_generators(seed: int, step: int, positions: list[int]) -> list[torch.Generator]:
    """One CPU generator per batch item, seeded from ``(seed, step, position in the global batch)``."""
    gens = []
    for pos in positions:
        state = np.random.SeedSequence([seed, step, pos]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return gens


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of each global batch, for steps ``start_step … max_steps−1``.

    Unlike ``DistributedSampler`` (which shuffles per rank), the global batch is drawn first and then
    split, so the samples of a step do not depend on the number of ranks, and the order depends only
    on ``(seed, step)`` (which makes resuming exact without storing sampler state).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, max_steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_items < 1:
            raise UserError("the training dataset is empty")
        if batch_size % world_size:
            raise UserError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
        self.n, self.batch_size, self.seed = num_items, batch_size, seed
        self.max_steps, self.start_step = max_steps, start_step
        self.rank, self.world_size = rank, world_size
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))}
        return self._perms[epoch]

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of global batch ``step``."""
        out = []
        for p in range(step * self.batch_size, (step + 1) * self.batch_size):
            out.append(int(self._perm(p // self.n)[p % self.n]))
        return out

    def local_positions(self) -> list[int]:
        """Positions in the global batch of this rank's items."""
        local = self.batch_size // self.world_size
        return list(range(self.rank * local, (self.rank + 1) * local))

    def __iter__(self) -> Iterator[list[int]]:
        positions = self.local_positions()
        for step in range(self.start_step, self.max_steps):
            batch = self.global_batch(step)
            yield [batch[p] for p in positions]

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)


def resolve_pipeline(path: str | os.PathLike) -> Path:
    """A pipeline folder, or a training run folder (its latest checkpoint)."""
    path = Path(path).expanduser()
    if (path / PIPELINE_FILE).is_file():
        return path
    pointer = path / CKPT_DIR / LATEST
    if pointer.is_file():
        return path / CKPT_DIR / pointer.read_text().strip()
    raise UserError(f"base_pipeline {path} is neither a pipeline folder nor a training run with checkpoints")


def base_paths(spec: str | os.PathLike | list | None) -> list[str]:
    """``trainer.args.base_pipeline`` as a list of paths: one path, a list of them, or nothing."""
    if not spec:
        return []
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    if not all(isinstance(p, (str, os.PathLike)) and str(p) for p in items):
        raise UserError(f"base_pipeline must be a path or a list of paths, not {spec!r}")
    return [str(p) for p in items]


def merge_pipeline_folders(sources: list[PipelineFolder], target: Path) -> PipelineFolder:
    """One pipeline folder at ``target`` holding the stages of every folder in ``sources``.

    A stage held by two sources is an error (which one was meant is not knowable); pipeline settings named by
    several sources are taken from the first that names them. Checkpoint files and the image-encoder weights
    are copied. Used when a run stands on two runs trained apart (``base_pipeline: [a, b]``).
    """
    stages: dict[str, StageWeights] = {}
    owner: dict[str, Path] = {}
    args: dict[str, Any] = {}
    for folder in sources:
        for key, stage in folder.stages.items():
            if not stage.found:
                continue
            if key in owner:
                raise UserError(f"base pipelines {owner[key]} and {folder.path} both hold {key}; "
                                "a stage may come from one base only")
            owner[key] = folder.path
            name, model_args = read_model_config(stage.stem)
            stages[key] = StageWeights(folder.load(key, device="cpu").state_dict(), name, model_args, f"{CKPT_DIR}/{key}")
        for key, value in folder.config.settings().items():
            args.setdefault(key, value)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    # the image-encoder weights of the source whose spec was taken
    encoder_source = next((folder for folder in sources if folder.config.image_encoder is not None), None)
    weights = ((encoder_source.config.image_encoder.get("args") or {}).get("weights")) if encoder_source else None
    if weights and (encoder_source.path / weights).is_file():
        (target / weights).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(encoder_source.path / weights, target / weights)
    return write_pipeline_folder(target, stages, PipelineConfig().with_settings(args))


def folder_contents(folder: PipelineFolder | None) -> list[str]:
    """The stage keys whose weights ``folder`` holds, plus ``"image_encoder"`` when it names one."""
    if folder is None:
        return []
    return [k for k, st in folder.stages.items() if st.found] + (["image_encoder"] if folder.config.image_encoder else [])


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def dist_ready() -> bool:
    """Whether a multi-process group is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Trainer:
    """Base trainer. Subclasses implement :meth:`build`, :meth:`compute_loss` and, when they write more than
    their registry models, :meth:`pipeline_args` / :meth:`write_extras`.

    ``build`` must fill ``self.trainable`` (an ``nn.ModuleDict``: pipeline stage keys of registry models
    whose specs are in ``self.stage_specs``, plus any other trainable modules) and may load frozen models.
    """

    #: trainer name in the config
    name = "Trainer"
    #: what the trainer reads of each dataset item (:data:`pixal3d.data.dataset.FIELDS`)
    dataset_fields: tuple[str, ...] = ("image", "occupancy", "voxels")

    def __init__(self, cfg: TrainConfig, dataset: Dataset, collate, output_dir: str | os.PathLike | None,
                 device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1, progress: bool = True):
        self.cfg = cfg
        self.args = cfg.trainer_args
        self.dataset = dataset
        self.collate = collate
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.progress = progress and rank == 0
        self.step = 0
        self.base: PipelineFolder | None = None
        bases = [open_pipeline_folder(resolve_pipeline(p)) for p in base_paths(self.args.get("base_pipeline"))]
        if len(bases) == 1:
            self.base = bases[0]
        elif bases:
            merged = (self.output_dir / "base") if self.output_dir is not None else Path(tempfile.mkdtemp(prefix="pixal3d-base-"))
            if rank == 0:
                merge_pipeline_folders(bases, merged)
            if dist_ready():
                dist.barrier()
            self.base = open_pipeline_folder(merged)
        missing = sorted(set(self.base_requirements(self.args)) - set(folder_contents(self.base)))
        if missing:
            where = f"base pipeline {self.base.path}" if self.base is not None else "no base_pipeline"
            raise UserError(f"{self.name}: {where} lacks {', '.join(missing)}; train the stage that makes it first "
                            "and name that run as trainer.args.base_pipeline")
        self.trainable = nn.ModuleDict()
        self.stage_specs: dict[str, dict[str, Any]] = {}
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.build()
        self.trainable.to(self.device)
        self.ema = copy.deepcopy(self.trainable).requires_grad_(False).eval()
        params = [p for p in self.trainable.parameters() if p.requires_grad]
        if not params:
            raise UserError(f"{self.name}: nothing to train")
        opt = cfg.optimizer
        self.optimizer = torch.optim.AdamW(params, lr=float(opt["lr"]), betas=tuple(opt["betas"]),
                                           weight_decay=float(opt["weight_decay"]), eps=float(opt.get("eps", 1e-8)))

    # ---------------------------------------------------------------------------------------------
    # what a stage needs and makes (checked before anything is built; see pixal3d.training.chain)
    @classmethod
    def base_requirements(cls, args: dict[str, Any]) -> list[str]:
        """Stage keys (and ``"image_encoder"``) the base pipeline must hold for trainer args ``args``."""
        return []

    @classmethod
    def products(cls, args: dict[str, Any], models: dict[str, Any]) -> list[str]:
        """Stage keys (and ``"image_encoder"``) a checkpoint of this trainer adds to its base's."""
        return list(models)

    # ---------------------------------------------------------------------------------------------
    # subclass interface
    def build(self) -> None:
        """Create ``self.trainable`` (and frozen models)."""
        raise NotImplementedError

    def compute_loss(self, batch: dict[str, Any], generators: list[torch.Generator]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total loss, {term: value})`` of a local batch; ``generators`` has one entry per item."""
        raise NotImplementedError

    def pipeline_args(self) -> dict[str, Any]:
        """Pipeline settings written to ``pipeline.json`` beside the base folder's (normalisation, encoder ...)."""
        return {}

    def write_extras(self, folder: Path, ema: nn.ModuleDict) -> None:
        """Write files the pipeline needs besides the registry stages (called before ``pipeline.json``)."""

    # ---------------------------------------------------------------------------------------------
    # helpers for subclasses
    def build_stage(self, key: str) -> nn.Module:
        """Build model ``key`` of the config's ``models`` (a pipeline stage key) and register its spec."""
        if key not in self.cfg.models:
            raise UserError(f"{self.name} needs models.{key} in the config (has: {', '.join(self.cfg.models)})")
        spec = self.cfg.models[key]
        self.stage_specs[key] = {"name": spec["name"], "args": dict(spec.get("args") or {})}
        return build_model(spec["name"], self.stage_specs[key]["args"])

    def load_frozen(self, key: str) -> nn.Module:
        """Stage ``key`` of the base pipeline folder, on the device, frozen."""
        if self.base is None:
            raise UserError(f"{self.name} needs trainer.args.base_pipeline (a pipeline folder with {key})")
        model = self.base.load(key, device=self.device)
        return model.eval().requires_grad_(False)

    def autocast(self):
        """bf16 autocast when ``mixed_precision`` is ``bf16``."""
        if self.cfg.mixed_precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ---------------------------------------------------------------------------------------------
    # the loop
    @property
    def local_batch_size(self) -> int:
        return self.cfg.batch_size // self.world_size

    def lr_at(self, step: int) -> float:
        lr = float(self.cfg.optimizer["lr"])
        warm = self.cfg.lr_warmup_steps
        return lr * min(1.0, (step + 1) / warm) if warm else lr

    def _all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def train_step(self, batch: dict[str, Any], positions: list[int]) -> dict[str, float]:
        """One optimiser step on a local batch; returns the rank-averaged loss terms, lr and grad norm."""
        self.trainable.train()
        gens = item_generators(self.cfg.seed, self.step, positions)
        with self.autocast():
            loss, terms = self.compute_loss(batch, gens)
        if not torch.isfinite(loss):
            raise UserError(f"the loss became NaN/Inf at step {self.step} ({', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}); "
                            f"lower the learning rate or enable grad_clip, then resume from the last checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        failpoint("train.step")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if dist_ready():
            self._all_reduce_grads(params)
        clip = self.cfg.grad_clip if self.cfg.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.update_ema()
        self.step += 1
        values = torch.stack([loss.detach().float()] + [v.detach().float() for v in terms.values()]).cpu()
        if dist_ready():
            values = values.to(self.device)
            dist.all_reduce(values)
            values = values.cpu() / self.world_size
        out = {"loss": float(values[0])}
        out.update({k: float(v) for k, v in zip(terms, values[1:])})
        out.update(lr=lr, grad_norm=float(grad_norm))
        return out

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema ← rate·ema + (1−rate)·weights`` (buffers copied)."""
        rate = self.cfg.ema_rate
        ema_params = [p for p in self.ema.parameters()]
        params = [p.detach() for p in self.trainable.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - rate)
        for b_ema, b in zip(self.ema.buffers(), self.trainable.buffers()):
            b_ema.copy_(b)

    def data_loader(self) -> tuple[DataLoader, GlobalBatchSampler]:
        sampler = GlobalBatchSampler(len(self.dataset), self.cfg.batch_size, self.cfg.seed, self.cfg.max_steps,
                                     self.step, self.rank, self.world_size)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate,  # no more workers than cores
                            num_workers=min(self.cfg.num_workers, os.cpu_count() or 1), persistent_workers=False)
        return loader, sampler

    def train(self, max_steps: int | None = None, write: bool = True,
              max_seconds: float | None = None) -> list[dict[str, float]]:
        """Train until ``max_steps`` (config default); checkpoints every ``save_every`` and at the end.

        ``max_seconds`` bounds this call's wall-clock time (a lent GPU's budget): the first step that ends past it
        is the last, logged and checkpointed like a final step (every rank stops at the same step), and a later
        call resumes from there. With ``write=False`` nothing is written (``--tryrun``). Returns the logged rows
        of this call.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        stop = min(max_steps or self.cfg.max_steps, self.cfg.max_steps)
        loader, sampler = self.data_loader()
        positions = sampler.local_positions()
        rows: list[dict[str, float]] = []
        bar = tqdm(total=stop, initial=self.step, disable=not self.progress, desc=self.name, dynamic_ncols=True)
        window: list[dict[str, float]] = []
        started = time.perf_counter()
        for batch in loader:
            if self.step >= stop:
                break
            stats = self.train_step(batch, positions)
            window.append(stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4f}")
            timed_out = deadline is not None and self._past(deadline)
            if timed_out:
                stop = self.step
            if self.step % self.cfg.log_every == 0 or self.step == stop:
                elapsed = time.perf_counter() - started
                row = {"step": self.step, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                       "samples_per_s": len(window) * self.cfg.batch_size / max(elapsed, 1e-9)}
                rows.append(row)
                if write:
                    self.append_log(row)
                window, started = [], time.perf_counter()
            if write and (self.step % self.cfg.save_every == 0 or self.step == self.cfg.max_steps or timed_out):
                self.save_checkpoint()
        bar.close()
        return rows

    def _past(self, deadline: float) -> bool:
        """Whether ``deadline`` (``time.monotonic``) has passed on any rank (so that all stop together)."""
        late = torch.tensor([float(time.monotonic() >= deadline)], device=self.device)
        if dist_ready():
            dist.all_reduce(late, op=dist.ReduceOp.MAX)
        return bool(late.item())

    # ---------------------------------------------------------------------------------------------
    # logs
    def append_log(self, row: dict[str, float]) -> None:
        """Append a row to ``log.csv`` (rank 0)."""
        if self.rank != 0 or self.output_dir is None:
            return
        path = self.output_dir / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _truncate_log(self) -> None:
        path = self.output_dir / LOG_FILE if self.output_dir is not None else None
        if self.rank != 0 or path is None or not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames
            kept = [r for r in reader if _complete_row(r, fields) and int(r["step"]) <= self.step]
        if not fields:
            path.unlink()
            return
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)

    def plot_loss(self) -> None:
        """``loss.png`` from ``log.csv``: every loss term against the step (log scale when positive)."""
        path = self.output_dir / LOG_FILE if self.output_dir is not None else None
        if self.rank != 0 or path is None or not path.is_file():
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        steps = [int(r["step"]) for r in rows]
        terms = [k for k in rows[0] if k not in ("step", "lr", "grad_norm", "samples_per_s")]
        fig, ax = plt.subplots(figsize=(7, 4))
        for k in terms:
            ax.plot(steps, [float(r[k]) for r in rows], label=k)
        if all(float(r[k]) > 0 for r in rows for k in terms):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{self.name} ({self.output_dir.name})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_output(self.output_dir / PLOT_FILE) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)

    # ---------------------------------------------------------------------------------------------
    # checkpoints
    def _base_stages(self) -> dict[str, StageWeights]:
        stages = {}
        if self.base is None:
            return stages
        for key, stage in self.base.stages.items():
            if key in self.stage_specs or not stage.found:
                continue
            name, args = read_model_config(stage.stem)
            weights = self.base.load(key, device="cpu").state_dict()
            stages[key] = StageWeights(weights, name, args, f"{CKPT_DIR}/{key}")
        return stages

    def write_pipeline(self, folder: Path) -> PipelineFolder:
        """Write the EMA weights (and the base folder's other stages) as a pipeline folder at ``folder``."""
        stages = self._base_stages()
        for key, spec in self.stage_specs.items():
            stages[key] = StageWeights(self.ema[key], spec["name"], spec["args"], f"{CKPT_DIR}/{key}")
        base = self.base.config if self.base else PipelineConfig()
        config = base.with_settings({"models": {}, **self.pipeline_args()}, name=PIPELINE_NAME)
        folder.mkdir(parents=True, exist_ok=True)
        self.write_extras(folder, self.ema)
        self._copy_base_encoder_weights(folder, config.image_encoder)
        return write_pipeline_folder(folder, stages, config)

    def _copy_base_encoder_weights(self, folder: Path, encoder: dict | None) -> None:
        """Carry the base folder's image-encoder weights file forward when the trainer did not write its own
        (every later stage of a chain keeps the ``encoder`` spec that ``pipeline.json`` names)."""
        weights = ((encoder or {}).get("args") or {}).get("weights")
        if weights is None or self.base is None or (folder / weights).is_file():
            return
        source = self.base.path / weights
        if not source.is_file():
            raise UserError(f"base pipeline {self.base.path} names image-encoder weights {weights} but has no such file")
        (folder / weights).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / weights)

    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "trainer": self.name,
            "config": self.cfg.as_dict(),
            "weights": _cpu_state(self.trainable),
            "ema": _cpu_state(self.ema),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }

    def save_checkpoint(self, root: Path | None = None) -> Path | None:
        """Write ``ckpts/step_{N:07d}/`` (pipeline folder + ``trainer_state.pt``) and the ``latest`` pointer.

        Rank 0 writes into a hidden temporary folder renamed into place when complete (a checkpoint of the
        same step is moved aside first and removed only after), then replaces ``latest``; other ranks wait
        at a barrier. A failure (e.g. a full disk) removes the temporary folder and leaves the previous
        checkpoints and ``latest`` as they were.
        """
        root = root if root is not None else self.output_dir / CKPT_DIR
        final = root / step_dir_name(self.step)
        if self.rank == 0:
            tmp = root / f".{final.name}.tmp"
            old = root / f".{final.name}.old"
            for leftover in (tmp, old):
                if leftover.exists():
                    shutil.rmtree(leftover)
            try:
                self.write_pipeline(tmp)
                failpoint("checkpoint.weights")
                with atomic_output(tmp / STATE_FILE) as t:
                    torch.save(self.trainer_state(), t)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            failpoint("checkpoint.rename")
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            failpoint("checkpoint.latest")
            with atomic_output(root / LATEST) as t:
                t.write_text(final.name + "\n")
            if old.exists():
                shutil.rmtree(old)
            self.plot_loss()
        if dist_ready():
            dist.barrier()
        return final

    def _checkpoint_candidates(self, root: Path, ckpt: str) -> list[Path]:
        """Folders to try for ``ckpt``: the pointer's target then every ``step_*`` newest first (``latest``),
        or the one step folder asked for."""
        if ckpt != "latest":
            try:
                return [root / step_dir_name(int(ckpt))]
            except ValueError:
                raise UserError(f"--ckpt must be 'latest' or a step number, got {ckpt!r}") from None
        pointer = root / LATEST
        named = []
        if pointer.is_file():
            name = pointer.read_text().strip()
            if name and "/" not in name and name not in (".", ".."):
                named = [root / name]
        steps = sorted((p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()),
                       key=lambda p: int(p.name[5:]), reverse=True) if root.is_dir() else []
        return list(dict.fromkeys(named + steps))

    def resume(self, load_dir: str | os.PathLike, ckpt: str = "latest") -> bool:
        """Load ``load_dir/ckpts/<ckpt>`` (``latest`` or a step number). ``False`` if ``latest`` has none yet.

        With ``latest``, a checkpoint that is missing or does not load (damaged by hand or by the disk) is
        skipped, with a note, for the next newest one.
        """
        root = Path(load_dir) / CKPT_DIR
        candidates = self._checkpoint_candidates(root, ckpt)
        if ckpt == "latest" and not candidates:
            return False
        state, folder, skipped = None, None, []
        for folder in candidates:
            try:
                state = self._read_state(folder)
                break
            except UserError as exc:
                if ckpt != "latest":
                    raise
                skipped.append(str(exc))
        if state is None:
            raise UserError(f"no loadable checkpoint in {root}: {skipped[0]}; remove {root} to start afresh")
        if skipped and self.rank == 0:
            log.warning(f"resuming from {folder.name}: skipped newer checkpoint(s): {'; '.join(skipped)}")
        if state.get("trainer") != self.name:
            raise UserError(f"{folder} was written by {state.get('trainer')}, not {self.name}")
        try:
            self.trainable.load_state_dict(state["weights"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"{folder} does not match this config's models: {str(exc).splitlines()[0]}") from exc
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self._truncate_log()
        return True

    @staticmethod
    def _read_state(folder: Path) -> dict[str, Any]:
        """``trainer_state.pt`` of checkpoint ``folder``; :class:`UserError` if it is missing or damaged."""
        path = folder / STATE_FILE
        if not path.is_file():
            raise UserError(f"no checkpoint {folder.name} in {folder.parent} ({STATE_FILE} missing)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises many types for a damaged file
            raise UserError(f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        if not isinstance(state, dict) or not {"step", "weights", "ema", "optimizer", "rng"} <= set(state):
            raise UserError(f"{path} is not a trainer state")
        return state


def _complete_row(row: dict, fields: list[str] | None) -> bool:
    """Whether a ``log.csv`` row has every field and a whole-number step (a row torn by a crash has not)."""
    if not fields or None in row or any(row.get(k) in (None, "") for k in fields):
        return False
    return str(row["step"]).isdigit()


