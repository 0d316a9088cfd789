#!/usr/bin/env bash
# One call for whoever gets an accelerator (about 6-8 minutes, JSON results in OUT_DIR):
#   1. what the devices are (nvidia-smi, torch, JAX);
#   2. a few training batches on each backend, wall time with compilation and data;
#   3. both backends' sampling and training throughput (benchmarks/backends.py);
#   4. data-parallel scaling with torchrun over 1 and 2 GPUs (NCCL) when 2 or more are present
#      (benchmarks/scaling.py), gloo over 1 and 2 CPU ranks otherwise;
#   5. about 3 minutes of the paper preset `paper-nqueens8` (D = 512, N_sup = 16, batch 768),
#      its batches per second and puzzles per second.
#
#   bash benchmarks/device_check.sh [OUT_DIR]      (default: runs/device-check)
#
# Needs the project's environment (`make` creates .venv); nothing is downloaded. With a GPU,
# JAX uses it by itself (a CUDA jaxlib must be installed for that); torch puts the Pyro backend
# on cuda:LOCAL_RANK when it sees CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/device-check}"
PY="${PYTHON:-.venv/bin/python}"
PRESET_MINUTES="${PRESET_MINUTES:-3}"
mkdir -p "$OUT"
echo "== device"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi") | tee "$OUT/devices.txt"
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" - <<'PYEOF' | tee -a "$OUT/devices.txt"
import jax, torch
print("torch", torch.__version__, "cuda:", torch.cuda.is_available(), torch.cuda.device_count(), "device(s)")
print("jax", jax.__version__, "devices:", jax.devices())
PYEOF
echo "== a few training steps on each backend (8-Queens, D=64)"
for backend in pyro numpyro; do
  start=$SECONDS
  "$PY" -m gram_ppl fit --task nqueens --size 8 --backend "$backend" --steps 5 --eval-minutes 100 \
    --out "$OUT/fit-$backend" --force --quiet
  echo "$backend: $((SECONDS - start)) s for 5 batches, compilation and data included" | tee -a "$OUT/fit-times.txt"
done
echo "== sampling and training benchmark"
"$PY" benchmarks/backends.py --ns 1,64,256 --threads "${THREADS:-1}" --json "$OUT/backends.json"
echo "== data-parallel scaling (torchrun; $GPUS GPU(s))"
if [ "$GPUS" -ge 2 ]; then
  "$PY" benchmarks/scaling.py --ranks 1,2 --steps 40 --dim 256 --batch 256 --json "$OUT/scaling.json"
else
  "$PY" benchmarks/scaling.py --ranks 1,2 --steps 30 --json "$OUT/scaling.json"
fi
echo "== the paper preset paper-nqueens8 for $PRESET_MINUTES minutes"
"$PY" -m gram_ppl fit --preset paper-nqueens8 --minutes "$PRESET_MINUTES" --eval-minutes 100 \
  --out "$OUT/paper-nqueens8" --force --quiet
"$PY" - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
rows = [h for h in json.load(open(f"{out}/paper-nqueens8/history.json")) if "loss" in h]
span = rows[-1]["seconds"] - rows[0]["seconds"] if len(rows) > 1 else float("nan")
per_s = (len(rows) - 1) / span if len(rows) > 1 else float("nan")
res = {"preset": "paper-nqueens8", "batches": len(rows), "batches_per_s": per_s, "puzzles_per_s": 768 * per_s,
       "first_batch_s": rows[0]["seconds"], "last_loss": rows[-1]["loss"]}
json.dump(res, open(f"{out}/paper-preset.json", "w"), indent=1)
print(res)
PYEOF
echo "== done: $OUT/{backends,scaling,paper-preset}.json"
