"""Sampling throughput of multi-trajectory inference (Pyro backend).

    .venv/bin/python benchmarks/sampling.py [--threads 1] [--json out.json]

Trajectory-steps per second (one trajectory advanced by one supervision step) against the
number of trajectories N per puzzle (1 to 256, batched into one tensor) and against depth; and
batched sampling of N = 64 trajectories against a Python loop over the 64 samples (target: the
batch at least 5x faster). Untrained 8-Queens network, D = 64, K = 2, T = 1, 8 puzzles.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import median_seconds, write_json

from gram_ppl import TaskConfig, build_dataset
from gram_ppl.config import GramConfig, NetConfig
from gram_ppl.inference.sampling import rollout
from gram_ppl.inference.svi_pyro import setup as setup_torch
from gram_ppl.models import gram_pyro
from gram_ppl.networks.torch_nets import build_net

PUZZLES = 8


def setup():
    cfg = GramConfig(task=TaskConfig(name="nqueens", size=8), net=NetConfig(dim=64), priors=gram_pyro.PRIORS)
    data = build_dataset(cfg.task)
    torch.manual_seed(0)
    net = build_net(cfg, data.task).eval()
    x = torch.as_tensor(data.test.x[:PUZZLES].astype(np.int64))
    return cfg, net, x


def seconds(fn, repeats: int = 3) -> float:
    return median_seconds(fn, repeats, warmup=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    args = p.parse_args(argv)
    setup_torch(args.threads)
    cfg, net, x = setup()
    rows = {"by_n": [], "by_depth": []}
    ns, depths, big = ((1, 2), (2,), 4) if args.quick else ((1, 4, 16, 64, 256), (2, 4, 8, 16), 64)
    for n in ns:
        t = seconds(lambda n=n: rollout(gram_pyro, net, cfg, x, n, depth=4))
        rows["by_n"].append({"N": n, "depth": 4, "seconds": t, "traj_steps_per_s": n * PUZZLES * 4 / t})
    for depth in depths:
        t = seconds(lambda d=depth: rollout(gram_pyro, net, cfg, x, 16, depth=d))
        rows["by_depth"].append({"N": 16, "depth": depth, "seconds": t, "traj_steps_per_s": 16 * PUZZLES * depth / t})
    batched = seconds(lambda: rollout(gram_pyro, net, cfg, x, big, depth=4))
    looped = seconds(lambda: [rollout(gram_pyro, net, cfg, x, 1, depth=4) for _ in range(big)], repeats=1)
    rows["batch_vs_loop"] = {"N": big, "batched_s": batched, "loop_s": looped, "speedup": looped / batched}
    print(f"threads {args.threads}, {PUZZLES} puzzles of 8-Queens, D = 64\n")
    print("| N | depth | time | trajectory-steps/s |\n|---|---|---|---|")
    for r in rows["by_n"] + rows["by_depth"]:
        print(f"| {r['N']} | {r['depth']} | {r['seconds'] * 1e3:.0f} ms | {r['traj_steps_per_s']:.0f} |")
    b = rows["batch_vs_loop"]
    print(f"\nN = {b['N']}, depth 4: batched {b['batched_s']:.2f} s, loop over samples {b['loop_s']:.2f} s, "
          f"speed-up {b['speedup']:.1f}x (target >= 5x)")  # fmt: skip
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
