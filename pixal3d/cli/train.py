"""``pixal3d train`` (also ``python train.py``, the upstream interface): command line, process launch
(torch.distributed) and the run of one trainer.

``--num_gpus N`` (N ≥ 1) spawns N processes per node, one per GPU, NCCL backend; ``--num_gpus 0`` trains on
the CPU with ``--nproc`` processes per node (gloo backend; 1 by default). The world size is
processes-per-node × ``--num_nodes``; rank = ``node_rank`` × processes-per-node + local rank. The config's
``batch_size`` is the global batch. The datasets are :func:`pixal3d.training.config.build_dataset` over
:func:`pixal3d.data.dataset.data_roots`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pixal3d.cli import OneLineErrorParser
from pixal3d.data.dataset import data_roots
from pixal3d.errors import UserError, run_guarded
from pixal3d.training.config import TrainConfig, build_dataset, load_config
from pixal3d.training.registry import trainer_class
from pixal3d.utils.files import write_json

DESCRIPTION = "Train a Pixal3D stage; checkpoints are pipeline folders."


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``train.py`` / ``pixal3d train`` (the same in both)."""
    p.add_argument("--config", required=True, help="training config JSON")
    p.add_argument("--output_dir", required=True, help="run folder (ckpts/, log.csv, loss.png)")
    p.add_argument("--data_dir", required=True,
                   help="built dataset folder, or JSON (text or file): a folder or a list of folders")
    p.add_argument("--load_dir", default=None, help="resume from this run folder (default: --output_dir)")
    p.add_argument("--ckpt", default="latest", help="checkpoint to resume: 'latest' (if any) or a step number")
    p.add_argument("--tryrun", action="store_true", help="build everything, run one step, write nothing")
    p.add_argument("--num_gpus", type=int, default=-1, help="GPUs per node (-1: all visible; 0: train on the CPU)")
    p.add_argument("--nproc", type=int, default=1, help="CPU processes per node with --num_gpus 0")
    p.add_argument("--num_nodes", type=int, default=1)
    p.add_argument("--node_rank", type=int, default=0)
    p.add_argument("--master_addr", default="127.0.0.1")
    p.add_argument("--master_port", type=int, default=12345)
    p.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    p.add_argument("--max_steps", type=int, default=None,
                   help="override the config's max_steps (and save_every when larger): smoke runs of a shipped config")
    p.add_argument("--max_minutes", type=float, default=None,
                   help="stop after this many minutes of training, with a checkpoint at the last step (a lent GPU's "
                        "budget); rerun to continue")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python train.py``."""
    p = OneLineErrorParser(prog="train.py", description=DESCRIPTION)
    add_train_arguments(p)
    return p


def register(subparsers) -> None:
    """Add ``train`` (the options of ``train.py``) to the ``pixal3d`` parser."""
    p = subparsers.add_parser("train", help="train one stage (as train.py); checkpoints are pipeline folders",
                              description=DESCRIPTION)
    add_train_arguments(p)
    p.set_defaults(handler=_run)


def _processes_per_node(args: argparse.Namespace) -> tuple[int, bool]:
    if args.num_gpus == 0:
        if args.nproc < 1:
            raise UserError(f"--nproc must be >= 1, got {args.nproc}")
        return args.nproc, False
    available = torch.cuda.device_count()
    if args.num_gpus < 0:
        return (available, True) if available else (1, False)
    if args.num_gpus > available:
        raise UserError(f"--num_gpus {args.num_gpus} but only {available} CUDA devices are visible (use --num_gpus 0 for CPU)")
    return args.num_gpus, True


def run_worker(local_rank: int, args: argparse.Namespace, cfg: TrainConfig, nproc: int, use_cuda: bool) -> None:
    """One training process (rank ``node_rank·nproc + local_rank``)."""
    world = nproc * args.num_nodes
    rank = args.node_rank * nproc + local_rank
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        if world > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"tcp://{args.master_addr}:{args.master_port}",
                                rank=rank, world_size=world)
    try:
        dataset, collate = build_dataset(cfg, data_roots(args.data_dir))
        output = Path(args.output_dir)
        trainer = trainer_class(cfg.trainer_name)(cfg, dataset, collate, output, device, rank, world,
                                                  progress=not args.no_progress)
        if args.tryrun:
            rows = trainer.train(max_steps=1, write=False)
            with tempfile.TemporaryDirectory() as tmp:  # exercise the checkpoint writer, keep nothing
                trainer.save_checkpoint(Path(tmp))
            if rank == 0:
                terms = ", ".join(f"{k}={v:.4g}" for k, v in rows[-1].items() if k != "step")
                print(f"tryrun ok: {cfg.trainer_name}, 1 step ({terms})")
            return
        resumed = trainer.resume(args.load_dir or output, args.ckpt)
        if rank == 0:
            write_json(output / "config.json", cfg.as_dict())
        if rank == 0 and resumed:
            print(f"resumed from step {trainer.step}")
        trainer.train(max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    finally:
        if world > 1:
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py``; returns the exit code (2 with a one-line message for bad input, 130 when interrupted;
    see :func:`pixal3d.errors.describe`)."""
    args = build_parser().parse_args(argv)
    return run_guarded(_run, args)


def _run(args: argparse.Namespace) -> int:
    """Validate everything cheap first, then train (one process, or one per device)."""
    cfg = load_config(args.config)
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise UserError(f"--max_steps must be at least 1, got {args.max_steps}")
        cfg.max_steps, cfg.save_every = args.max_steps, min(cfg.save_every, args.max_steps)
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise UserError(f"--max_minutes must be positive, got {args.max_minutes}")
    trainer_class(cfg.trainer_name)
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output_dir {output} is a file, not a folder; name a folder for the run")
    build_dataset(cfg, data_roots(args.data_dir))
    if args.num_nodes < 1 or not 0 <= args.node_rank < args.num_nodes:
        raise UserError("need --num_nodes >= 1 and 0 <= --node_rank < --num_nodes")
    if args.ckpt != "latest" and not args.ckpt.isdigit():
        raise UserError(f"--ckpt must be 'latest' or a step number, got {args.ckpt!r}")
    nproc, use_cuda = _processes_per_node(args)
    if cfg.batch_size % (nproc * args.num_nodes):
        raise UserError(f"batch_size {cfg.batch_size} is not divisible by {nproc * args.num_nodes} processes")
    if nproc * args.num_nodes == 1:
        run_worker(0, args, cfg, 1, use_cuda)
    else:
        mp.spawn(run_worker, args=(args, cfg, nproc, use_cuda), nprocs=nproc, join=True)
    return 0
