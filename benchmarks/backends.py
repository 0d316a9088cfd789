"""NumPyro (jit-compiled JAX) against Pyro (torch): sampling throughput and training step time.

    .venv/bin/python benchmarks/backends.py [--task nqueens --size 8] [--dim 64] [--ns 1,64,256]
        [--puzzles 8] [--repeats 3] [--threads 1] [--json out.json] [--quick]

Also one puzzle with N = min(max N, 64) trajectories: one batched call against a Python loop over
N single-sample calls (the multi-trajectory issue's target: batching ≥ 5× faster).

Both backends run the same networks (weights converted torch -> flax) on the same puzzles.
Sampling: N prior trajectories per puzzle for N_sup supervision steps, batched over N; the
rate is trajectory-steps per second (N · puzzles · steps / seconds), the median of `repeats`
calls after the first. The first NumPyro call compiles; its extra time is reported as compile
time, separately. Training: one batch (N_sup optimiser steps) of the default recipe, median
seconds, and the NumPyro compile time of the first batch. `--threads` pins torch's intra-op
threads and XLA's CPU thread pool (set before JAX starts).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="nqueens")
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--ns", default="1,64,256")
    p.add_argument("--puzzles", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    args = p.parse_args(argv)
    if args.quick:
        args.task, args.size, args.dim, args.ns, args.puzzles, args.repeats = "nqueens", 5, 16, "1,4", 2, 1
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} intra_op_parallelism_threads={args.threads}",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    import numpy as np
    import torch
    from common import median_seconds, twin_networks, write_json

    from gram_ppl.config import FitConfig, GramConfig, NetConfig, TaskConfig
    from gram_ppl.inference import svi_numpyro, svi_pyro
    from gram_ppl.inference.svi_pyro import setup as setup_torch
    from gram_ppl.models import gram_numpyro, gram_pyro
    from gram_ppl.networks.torch_nets import build_net

    setup_torch(args.threads)
    layers = 1 if args.quick else 2
    cfg = GramConfig(
        task=TaskConfig(name=args.task, size=args.size),
        net=NetConfig(dim=args.dim, heads=2 if args.quick else 4, layers=layers),
        fit=FitConfig(threads=args.threads, **({"n_sup": 2} if args.quick else {})),  # quick: 2 programs to compile
        priors=gram_pyro.PRIORS,
    )
    data, tnet, ncfg, net, params = twin_networks(cfg)
    task = data.task
    bound = svi_numpyro.Bound(net, params)
    x = data.test.x[: args.puzzles].astype(np.int64)
    depth = cfg.fit.n_sup
    print(f"device: {jax.devices()[0].platform} (jax), torch threads {torch.get_num_threads()}; "
          f"{args.task} {args.size}, D={args.dim}, {args.puzzles} puzzles, {depth} steps")  # fmt: skip

    rows = []
    print("\n| N | Pyro traj-steps/s | NumPyro traj-steps/s | speed-up | NumPyro compile s |")
    print("|---|---|---|---|---|")
    for n in (int(v) for v in args.ns.split(",")):
        work = n * len(x) * depth

        def pyro_call(n=n):
            with torch.no_grad():
                svi_pyro.sample(gram_pyro, tnet, cfg, x, num_samples=n)

        def jax_call(n=n):
            svi_numpyro.sample(gram_numpyro, bound, ncfg, x, num_samples=n, seed=1)

        t0 = time.perf_counter()
        jax_call()
        first = time.perf_counter() - t0
        t_jax = median_seconds(jax_call, args.repeats)
        t_pyro = median_seconds(pyro_call, args.repeats, warmup=True)
        row = {"N": n, "pyro": work / t_pyro, "numpyro": work / t_jax, "compile_s": max(first - t_jax, 0.0)}
        rows.append(row)
        print(
            f"| {n} | {row['pyro']:,.0f} | {row['numpyro']:,.0f} | {row['numpyro'] / row['pyro']:.2f}x | {row['compile_s']:.1f} |"
        )

    n_loop = max(int(v) for v in args.ns.split(","))
    n_loop = min(n_loop, 64)
    one = x[:1]
    loops = {}
    print(f"\none puzzle, N = {n_loop}: one batched call against a Python loop of {n_loop} single samples")
    for name, call in (
        ("pyro", lambda n: svi_pyro.sample(gram_pyro, tnet, cfg, one, num_samples=n)),
        ("numpyro", lambda n: svi_numpyro.sample(gram_numpyro, bound, ncfg, one, num_samples=n, seed=2)),
    ):
        with torch.no_grad():
            batched = median_seconds(lambda call=call: call(n_loop), args.repeats, warmup=True)
            looped = median_seconds(lambda call=call: [call(1) for _ in range(n_loop)], args.repeats, warmup=True)
        loops[name] = {"batched_s": batched, "loop_s": looped, "speedup": looped / batched}
        print(f"  {name}: batched {batched * 1e3:.1f} ms, loop {looped * 1e3:.1f} ms: {looped / batched:.1f}x")

    B = min(cfg.fit.batch_size, len(data.train))
    bx, by, bn = data.train.x[:B], data.train.y[:B], data.train.num_solutions[:B]
    torch.manual_seed(0)
    pt = svi_pyro.Trainer(gram_pyro, build_net(cfg, task), cfg)
    nt = svi_numpyro.Trainer(gram_numpyro, bound.net, ncfg, params=params)
    tx, ty = torch.as_tensor(bx.astype(np.int64)), torch.as_tensor(by.astype(np.int64))
    t0 = time.perf_counter()
    nt.train_batch(bx, by, bn)
    first = time.perf_counter() - t0
    t_nt = median_seconds(lambda: nt.train_batch(bx, by, bn), args.repeats)
    t_pt = median_seconds(lambda: pt.train_batch(tx, ty, bn), args.repeats, warmup=True)
    train = {
        "batch": B,
        "pyro_s": t_pt,
        "numpyro_s": t_nt,
        "compile_s": max(first - t_nt, 0.0),
        "programs": svi_numpyro.TRACES[0],
    }
    programs = train["programs"]
    print(f"\ntraining batch ({B} puzzles, {depth} optimiser steps): Pyro {t_pt:.3f} s, NumPyro {t_nt:.3f} s "
          f"({t_pt / t_nt:.2f}x); NumPyro compile {train['compile_s']:.1f} s for {programs} programs")  # fmt: skip
    memory = peak_memory(torch, jax)
    print("peak memory: " + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in memory.items()))
    write_json(
        args.json, {"sampling": rows, "batch_vs_loop": loops, "training": train, "memory": memory, "config": vars(args)}
    )
    return 0


def peak_memory(torch, jax) -> dict[str, float]:
    """Peak bytes: the accelerator's for each backend when there is one, else the process's RSS."""
    import resource

    out = {"process RSS": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0}
    if torch.cuda.is_available():
        out["torch cuda"] = float(torch.cuda.max_memory_allocated())
    stats = jax.devices()[0].memory_stats() if jax.devices()[0].platform != "cpu" else None
    if stats:
        out["jax device"] = float(stats.get("peak_bytes_in_use", 0))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
