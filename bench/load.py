"""Bench (c): time and peak memory to load one official-size flow stage from safetensors.

Writes random weights for ``ss_flow_img_dit_1_3B_64_bf16`` (args from the reference manifest, ~1.34B
parameters; bf16 block weights, fp32 elsewhere, exactly the official file layout) to a temporary
folder once, then loads it in a fresh subprocess per method and prints a markdown table:

* ``load_model`` (mmap): build on meta, strict header check, memory-mapped reads, ``assign=True``;
* ``load_model`` (mmap=False): the same with plain positioned file reads, one tensor at a time;
* naive: construct the model normally (random init), ``safetensors.torch.load_file`` the whole
  file, ``load_state_dict``.

"max RSS" is the peak resident set of the loading process (``ru_maxrss``); "+touch" is the peak
after additionally reading every weight once (a forward pass touches them all: memory-mapped pages
then count as resident, but they are clean page-cache pages the kernel can drop and share).
The file is in the page cache when the loads run (it was just written). The temporary files
(~2.7 GB) are removed at the end.

Usage: ``python bench/load.py [--manifest STEM] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from runner import REPO, table_header, table_row

MANIFESTS = REPO.parent / "shared" / "reference" / "manifests"
ST_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
method, stem = sys.argv[1], sys.argv[2]
sys.path.insert(0, "bench")  # the working directory is the repository root
from runner import maxrss_mb as rss_mb
from pixal3d.models.loading import load_model, read_model_config
from pixal3d.models.registry import build_model, known_models
from safetensors.torch import load_file
known_models()  # import the model modules before timing
base = rss_mb()
start = time.perf_counter()
if method == "mmap":
    model = load_model(stem, mmap=True)
elif method == "read":
    model = load_model(stem, mmap=False)
else:
    cls_name, args = read_model_config(stem)
    model = build_model(cls_name, args)
    state = load_file(stem + ".safetensors")
    state.pop("rope_phases", None)
    model.load_state_dict(state, strict=False)
    del state
    model.eval()
seconds = time.perf_counter() - start
peak = rss_mb()
total = 0.0
with torch.no_grad():
    for p in model.parameters():
        total += float(p.float().sum()) if p.dtype != torch.float32 else float(p.sum())
touched = rss_mb()
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"seconds": seconds, "base_mb": base, "peak_mb": peak, "touched_mb": touched, "params": params}))
"""


def write_random_checkpoint(stem: Path, manifest: dict) -> int:
    """Stream random weights in the manifest's dtypes into ``{stem}.safetensors`` (+ JSON); returns bytes."""
    entries = [(k, v) for k, v in manifest["keys"].items() if v["kind"] == "param"]
    header, offset = {}, 0
    for key, entry in entries:
        size = math.prod(entry["shape"]) * torch.empty(0, dtype=getattr(torch, entry["dtype"])).element_size()
        header[key] = {"dtype": ST_NAMES[entry["dtype"]], "shape": entry["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    gen = torch.Generator().manual_seed(0)
    with open(stem.with_name(stem.name + ".safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, entry in entries:
            tensor = (torch.randn(entry["shape"], generator=gen) * 0.02).to(getattr(torch, entry["dtype"]))
            f.write(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    stem.with_name(stem.name + ".json").write_text(json.dumps({"name": manifest["name"], "args": manifest["args"]}))
    return 8 + len(raw) + offset


def run_child(method: str, stem: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(stem)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default="ss_flow_img_dit_1_3B_64_bf16", help="manifest stem (official checkpoint)")
    parser.add_argument("--dir", default=None, help="where to write the temporary checkpoint (default: system temp)")
    args = parser.parse_args()
    manifest = json.loads((MANIFESTS / f"{args.manifest}.json").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="pixal3d-load-bench-", dir=args.dir))
    try:
        stem = tmp / args.manifest
        start = time.perf_counter()
        size = write_random_checkpoint(stem, manifest)
        print(f"wrote {stem}.safetensors: {size / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows = []
        for method, label in (("mmap", "load_model (mmap, assign)"), ("read", "load_model (mmap=False)"),
                              ("naive", "naive: init + load_file + load_state_dict")):
            result = run_child(method, stem)
            rows.append((label, result))
            print(f"{label}: {result}", file=sys.stderr)
        print(f"\n{manifest['file_stem']} ({manifest['name']}, {manifest['num_params'] / 1e9:.2f}B params, "
              f"file {size / 2**30:.2f} GiB), {torch.get_num_threads()} threads, file in page cache\n")
        print(table_header(["method", "load time (s)", "max RSS after load (GiB)", "max RSS after touching all weights (GiB)"]))
        for label, r in rows:
            print(table_row([label, f"{r['seconds']:.1f}", f"{r['peak_mb'] / 1024:.2f}", f"{r['touched_mb'] / 1024:.2f}"]))
        print(f"\n(process RSS before loading: {rows[0][1]['base_mb'] / 1024:.2f} GiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
