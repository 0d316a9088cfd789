"""NumPyro training batch: this tree's loss against another checkout's, interleaved in one process.

    .venv/bin/python benchmarks/numpyro_loss_ab.py --old /tmp/old [--dim 64] [--repeats 5] [--quick]
    (git worktree add /tmp/old 25d4eb6: the last commit with the two-scan NumPyro loss)

Loads the other checkout's models/gram_numpyro.py and inference/svi_numpyro.py as files (the rest
of the package is this tree's), trains the same networks on the same 8-Queens batch with both and
with Pyro, alternating, and reports the median CPU seconds of the process per training batch
(process time: a busy machine changes it less than wall time), after one untimed batch each
(which compiles; its wall time is reported as compile time).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", type=Path, required=True, help="the other checkout's root")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    args = p.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    import torch
    from common import twin_networks, write_json

    from gram_ppl.config import FitConfig, GramConfig, NetConfig, TaskConfig
    from gram_ppl.inference import svi_numpyro, svi_pyro
    from gram_ppl.models import gram_numpyro, gram_pyro

    old_mod = load("old_gram_numpyro", args.old / "models" / "gram_numpyro.py")
    old_svi = load("old_svi_numpyro", args.old / "inference" / "svi_numpyro.py")
    svi_pyro.setup(1)
    size, net_cfg = (5, NetConfig(dim=16, heads=2, layers=1)) if args.quick else (8, NetConfig(dim=args.dim))
    fit_cfg = FitConfig(threads=1, batch_size=8, n_sup=1, K=1) if args.quick else FitConfig(threads=1)
    cfg = GramConfig(task=TaskConfig(name="nqueens", size=size), net=net_cfg, fit=fit_cfg, priors=gram_pyro.PRIORS)
    data, tnet, ncfg, net, params = twin_networks(cfg)
    B = cfg.fit.batch_size
    x, y, n = data.train.x[:B], data.train.y[:B], data.train.num_solutions[:B]  # (B, L_x), (B, L_y), (B,)
    tx, ty = torch.as_tensor(x.astype(np.int64)), torch.as_tensor(y.astype(np.int64))
    new = svi_numpyro.Trainer(gram_numpyro, net, ncfg, params=params)
    old = old_svi.Trainer(old_mod, net, ncfg, params=params)
    pyro = svi_pyro.Trainer(gram_pyro, tnet, cfg)
    calls = {
        "numpyro (this tree)": lambda: new.train_batch(x, y, n),
        "numpyro (--old)": lambda: old.train_batch(x, y, n),
        "pyro": lambda: pyro.train_batch(tx, ty, n),
    }
    compile_s, times = {}, {k: [] for k in calls}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        compile_s[name] = time.perf_counter() - t0
    for _ in range(args.repeats):
        for name, call in calls.items():
            t0 = time.process_time()
            call()
            times[name].append(time.process_time() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"nqueens {size}, D = {cfg.net.dim}, batch {B}, {cfg.fit.n_sup} optimiser steps per batch")
    print("| loss | CPU s per batch (median) | first batch wall s (compiles) |")
    print("|---|---|---|")
    for name in calls:
        print(f"| {name} | {med[name]:.3f} | {compile_s[name]:.1f} |")
    new_s, old_s, pyro_s = med["numpyro (this tree)"], med["numpyro (--old)"], med["pyro"]
    print(f"this tree / --old: {old_s / new_s:.2f}x faster; Pyro / this tree: {pyro_s / new_s:.2f}x")
    write_json(args.json, {"median_cpu_s": med, "first_batch_s": compile_s, "config": {"dim": cfg.net.dim, "B": B}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
