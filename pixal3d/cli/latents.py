"""``pixal3d latents stats``: the latent normalisation statistics of a pipeline folder's SC-VAE encoders.

Encodes up to ``--items`` dataset items (evenly spaced) with the folder's encoders and writes the per-channel
mean/std of the posterior means as ``<kind>_normalization`` in its ``pipeline.json``
(:func:`pixal3d.training.sc_vae.write_latent_normalization`, as the SC-VAE trainers do at every checkpoint).
"""

from __future__ import annotations

import math


def register(subparsers) -> None:
    """Add ``latents`` and its sub-command ``stats`` to the ``pixal3d`` parser."""
    from pixal3d.training.sc_vae import STAGES

    from pixal3d.cli import add_command_group

    sub = add_command_group(subparsers, "latents", "latent statistics of a pipeline folder or run", "Structured-latent tools.")
    s = sub.add_parser("stats", help="write <kind>_normalization into DIR/pipeline.json",
                       description="Latent normalisation statistics of a pipeline folder's SC-VAE encoders.")
    s.add_argument("--pipeline", required=True, help="pipeline folder, or a training run (its latest checkpoint)")
    s.add_argument("--data", required=True, help="built dataset folder, or JSON (text or file): a folder or a list")
    s.add_argument("--kind", action="append", choices=sorted(STAGES), help="latent kind (repeatable; default: all present)")
    s.add_argument("--items", type=int, default=64, help="dataset items encoded (evenly spaced)")
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--split", default="train", choices=("train", "val", "all"))
    s.add_argument("--device", default="cpu")
    s.set_defaults(handler=_stats)


def _stats(args) -> int:
    from torch.utils.data import ConcatDataset

    from pixal3d.data.build import load_manifest
    from pixal3d.data.dataset import ViewDataset, collate_views, data_roots
    from pixal3d.errors import UserError
    from pixal3d.training.sc_vae import write_latent_normalization
    from pixal3d.training.trainer import resolve_pipeline

    if args.items < 1 or args.batch < 1:
        raise UserError("--items and --batch must be >= 1")
    parts = []
    for root in data_roots(args.data):  # the occupancy grid is unused here: any side dividing R will do
        resolution = int(load_manifest(root)["config"]["resolution"])
        parts.append(ViewDataset(root, split=args.split, ss_resolution=math.gcd(64, resolution)))
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    folder = resolve_pipeline(args.pipeline)
    entries = write_latent_normalization(folder, dataset, collate_views, args.kind, args.device, args.items, args.batch)
    for kind, entry in entries.items():
        print(f"{kind}_normalization: {len(entry['mean'])} channels → {folder / 'pipeline.json'}")
    return 0
