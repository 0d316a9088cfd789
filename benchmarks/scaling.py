"""Data-parallel scaling of Pyro training under torchrun (gloo on CPUs, NCCL on GPUs).

    .venv/bin/python benchmarks/scaling.py [--ranks 1,2] [--steps 60] [--dim 64] [--json out.json]

For each rank count P: `torchrun --standalone --nproc-per-node P -m gram_ppl fit` on 8-Queens
(D = --dim, batch 64 in all: P shards of 64/P puzzles), one thread per rank. Throughput is
training puzzles per second of wall time between the first and the last batch of rank 0's
history (start-up, data and the final evaluation left out); memory is the peak RSS of the
largest process (a rank). Efficiency = puzzles/s at P / (P × puzzles/s at 1). Target
(issue 13): 2 gloo ranks on 2 cores ≥ 1.7× one. Only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_json


def run(ranks: int, steps: int, dim: int, size: int, batch: int, folder: Path) -> dict:
    out = folder / f"p{ranks}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
           "-m", "gram_ppl", "fit", "--task", "nqueens", "--size", str(size), "--steps", str(steps),
           "--set", f"net.dim={dim}", "--set", f"fit.batch_size={batch}", "--eval-minutes", "1000",
           "--checkpoint-minutes", "1000", "--quiet", "--out", str(out)]  # fmt: skip
    # a fresh wrapper process per rank count: its RUSAGE_CHILDREN peak covers torchrun and its ranks only
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], env={**os.environ, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    peak = int(r.stdout.strip().splitlines()[-1])  # KiB: the largest process (a rank)
    rows = [h for h in json.loads((out / "history.json").read_text()) if "loss" in h]
    t0, t1 = rows[0]["seconds"], rows[-1]["seconds"]
    return {"ranks": ranks, "batches": len(rows), "puzzles_per_s": batch * (len(rows) - 1) / (t1 - t0),
            "peak_rss_mib_max_process": peak / 1024}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 5-Queens, D = 16, 4 batches of 8")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.dim, args.size, args.batch = 4, 16, 5, 8
    ranks = [int(p) for p in args.ranks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(p, args.steps, args.dim, args.size, args.batch, Path(tmp)) for p in ranks]
    base = next((r["puzzles_per_s"] for r in rows if r["ranks"] == 1), None)
    print(f"{args.size}-Queens, D = {args.dim}, batch {args.batch} split over the ranks, {args.steps} batches\n")
    print("| ranks | puzzles/s | speed-up | efficiency | peak RSS of the largest process (MiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = r["puzzles_per_s"] / base if base else None
        r["efficiency"] = r["speedup"] / r["ranks"] if base else None
        su = f"{r['speedup']:.2f}×" if base else "–"
        eff = f"{r['efficiency']:.0%}" if base else "–"
        print(f"| {r['ranks']} | {r['puzzles_per_s']:.1f} | {su} | {eff} | {r['peak_rss_mib_max_process']:.0f} |")
    write_json(args.json, {"rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
