#!/usr/bin/env bash
# Train pixal3d-small's sparse-structure flow on a lent GPU machine, within a fixed number of minutes, from a pack
# (`pixal3d data pack`), and copy back what a model folder needs. See docs/training.md, "Training on a lent GPU".
#
#   bash scripts/train_gpu.sh PACK OUT [MINUTES] [train.py options ...]
#
# PACK: the pack folder (carried to the machine); OUT: where the results go (at most 8 files, each well under
# 16 MiB): sparse_structure_flow_model.{json,safetensors} (EMA weights, float32), log.csv, loss.png, config.json and
# step.txt. MINUTES (default 8) bounds the training itself; the run checkpoints then and a rerun on the same machine
# continues it (runs/gpu/ss_flow, or $RUN_DIR). The flow trains on the committed model's frozen image encoder, so its weights
# replace that model's `sparse_structure_flow_model` as they are. Runs on the CPU too (slowly), e.g. for a smoke test
# with `--max_steps 1 --num_gpus 0`.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/train_gpu.sh PACK OUT [MINUTES] [train.py options ...]" >&2
    exit 2
fi
pack=$(realpath "$1") out=$(realpath -m "$2") minutes=${3:-8}
shift $(($# < 3 ? $# : 3))
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
run=${RUN_DIR:-runs/gpu/ss_flow}
mkdir -p "$out"
PYTHONUNBUFFERED=1 "$python" train.py --config configs/train/small-gpu/ss_flow.json --data_dir "$pack" \
    --output_dir "$run" --max_minutes "$minutes" --no_progress "$@"
step=$(tr -d '[:space:]' < "$run/ckpts/latest")
cp "$run/ckpts/$step/ckpts/sparse_structure_flow_model.json" "$run/ckpts/$step/ckpts/sparse_structure_flow_model.safetensors" \
    "$run/log.csv" "$run/config.json" "$out/"
if [ -f "$run/loss.png" ]; then cp "$run/loss.png" "$out/"; fi
echo "$step" > "$out/step.txt"
echo "train_gpu: $step → $out"
