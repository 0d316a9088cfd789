#!/usr/bin/env bash
# One call for whoever gets an accelerator: what the device is, a few training steps on each
# backend, and the sampling/training benchmark with peak device memory. Under 5 minutes.
#
#   bash benchmarks/device_check.sh [OUT_DIR]      (default: runs/device-check)
#
# Needs the project's environment (`make` creates .venv); nothing is downloaded. With a GPU,
# JAX uses it by itself (a CUDA jaxlib must be installed for that); torch runs where the code
# puts it, which today is the CPU (see docs/benchmarks.md, "Accelerators").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/device-check}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
echo "== device"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi")
"$PY" - <<'PYEOF'
import jax, torch
print("torch", torch.__version__, "cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("jax", jax.__version__, "devices:", jax.devices())
PYEOF
echo "== a few training steps on each backend (8-Queens, D=64)"
for backend in pyro numpyro; do
  start=$SECONDS
  "$PY" -m gram_ppl fit --task nqueens --size 8 --backend "$backend" --steps 5 --eval-minutes 100 \
    --out "$OUT/fit-$backend" --force --quiet
  echo "$backend: $((SECONDS - start)) s for 5 batches, compilation and data included"
done
echo "== sampling and training benchmark"
"$PY" benchmarks/backends.py --ns 1,64,256 --threads "${THREADS:-1}" --json "$OUT/backends.json"
echo "== done: $OUT/backends.json"
