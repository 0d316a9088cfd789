"""Training-step benchmarks of the Pyro backend (issue: GRAM as a Pyro program).

    .venv/bin/python benchmarks/training.py [--threads 1] [--dims 64,128] [--compile] [--json out.json]

1. Pyro overhead: median ratio of one optimiser step through the Pyro model and guide (traces,
   replay, site distributions) to the same networks and loss written as plain torch. Target <= 1.15.
2. Memory flat in depth: peak RSS of a process training at N_sup = 4 and at N_sup = 32 (each in
   a fresh subprocess). Target: within 10%.
3. Throughput: puzzles per second and achieved GFLOP/s (counted with torch's FlopCounterMode)
   against the machine's measured float32 matmul peak at the same thread count. Target >= 40%.
   With --compile also with f_L / f_H torch.compiled (`fit.compile`), and the compile time; with
   --bfloat16 also with the core's products in bfloat16 (`net.precision`; FLOPs counted as float32's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import median_seconds, write_json

from gram_ppl import TaskConfig, build_dataset
from gram_ppl.config import FitConfig, GramConfig, NetConfig
from gram_ppl.inference.objective import kl_ceiling
from gram_ppl.inference.svi_pyro import Trainer, compile_core, head_losses, trajectory_loss
from gram_ppl.inference.svi_pyro import setup as setup_torch
from gram_ppl.models import gram_pyro
from gram_ppl.networks.torch_nets import build_net

MIXER = {"mixer": "attention"}  # set by --mixer


def make(dim: int, n_sup: int = 4, batch: int = 64, size: int = 8, compile: bool = False, precision="float32"):
    cfg = GramConfig(
        task=TaskConfig(name="nqueens", size=size),
        net=NetConfig(dim=dim, heads=4, mixer=MIXER["mixer"], precision=precision),
        fit=FitConfig(n_sup=n_sup, T=1, K=2, batch_size=batch),
        priors=gram_pyro.PRIORS,
    )
    data = build_dataset(cfg.task)
    torch.manual_seed(0)
    net = build_net(cfg, data.task)
    if compile:
        compile_core(net)
    trainer = Trainer(gram_pyro, net, cfg)
    x = torch.as_tensor(data.train.x[:batch].astype(np.int64))
    y = torch.as_tensor(data.train.y[:batch].astype(np.int64))
    return cfg, trainer, x, y, data.train.num_solutions[:batch]


def pyro_step(trainer, x, y, n):
    """One supervision step through Pyro (what Trainer.train_batch does N_sup times)."""
    import pyro

    cfg = trainer.cfg
    with pyro.validation_enabled(False):
        cap = torch.as_tensor(kl_ceiling(cfg.fit, n, x.shape[0]))
        terms = trajectory_loss(gram_pyro, trainer.net, cfg, trainer.priors, x, y, None, range(1), True, cap)
    halt, value, _ = head_losses(trainer.net, terms.h, terms.logits, y)
    trainer._update(terms.loss + cfg.fit.halt_weight * halt + cfg.fit.value_weight * value)


def torch_step(trainer, x, y):
    """The same networks and loss in plain torch: no traces, no distribution objects."""
    net, fit = trainer.net, trainer.cfg.fit
    e_x = net.embed(x)  # Embedded: e (B, L, D), relation ids
    h, l = net.initial_state(x.shape[0])
    u, l = net.transition(h, l, e_x)
    q_loc, q_scale = net.posterior(u, y)
    p_loc, p_scale = net.prior(u)
    eps = q_loc + q_scale * torch.randn_like(q_loc)
    h = u + eps

    def kl(ql, qs, pl, ps):
        return (torch.log(ps / qs) + (qs**2 + (ql - pl) ** 2) / (2 * ps**2) - 0.5).sum((-2, -1))

    a = fit.kl_balance
    kl_bal = a * kl(q_loc.detach(), q_scale.detach(), p_loc, p_scale) + (1 - a) * kl(
        q_loc, q_scale, p_loc.detach(), p_scale.detach()
    )
    logits = net.decode(h)  # (B, L_y, V)
    nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").sum(-1)  # (B,)
    halt, value, _ = head_losses(net, h, logits, y)
    trainer._update(nll.mean() + fit.beta * kl_bal.mean() + fit.halt_weight * halt + fit.value_weight * value)


def overhead(dim: int, repeats: int) -> dict:
    _, trainer, x, y, n = make(dim)
    for _ in range(3):
        pyro_step(trainer, x, y, n)
        torch_step(trainer, x, y)
    ratios, tp, tt = [], [], []
    for _ in range(repeats):  # interleaved, so drifts of the machine hit both alike
        t0 = time.perf_counter()
        pyro_step(trainer, x, y, n)
        t1 = time.perf_counter()
        torch_step(trainer, x, y)
        t2 = time.perf_counter()
        tp.append(t1 - t0)
        tt.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return {"dim": dim, "pyro_ms": 1e3 * statistics.median(tp), "torch_ms": 1e3 * statistics.median(tt),
            "median_ratio": statistics.median(ratios)}  # fmt: skip


def matmul_peak(threads: int) -> float:
    """Measured float32 GFLOP/s of a large square matmul at this thread count."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024**3 / min(times) / 1e9


def throughput(dim: int, batch: int, repeats: int, peak: float, compile: bool = False, precision="float32") -> dict:
    """FLOPs counted on the eager float32 step (FlopCounterMode sees aten ops, not compiled
    kernels); with `compile`, the step is then timed with f_L / f_H torch.compiled, after its
    compilation; with precision="bfloat16", with the core's products in bfloat16."""
    from torch.utils.flop_counter import FlopCounterMode

    _, trainer, x, y, n = make(dim, batch=batch)
    pyro_step(trainer, x, y, n)
    with FlopCounterMode(display=False) as counter:
        pyro_step(trainer, x, y, n)
    flops = counter.get_total_flops()
    compile_s = None
    if compile or precision != "float32":  # the timed trainer: another core than the counted one
        _, trainer, x, y, n = make(dim, batch=batch, compile=compile, precision=precision)
    if compile:
        t0 = time.perf_counter()
        pyro_step(trainer, x, y, n)
        compile_s = time.perf_counter() - t0
    t = median_seconds(lambda: pyro_step(trainer, x, y, n), repeats)
    return {"dim": dim, "batch": batch, "compiled": compile, "precision": precision, "compile_s": compile_s,
            "step_ms": 1e3 * t,
            "puzzles_per_s": batch / t, "gflops": flops / t / 1e9, "peak_gflops": peak,
            "share_of_peak": flops / t / 1e9 / peak}  # fmt: skip


def peak_rss_child(n_sup: int, dim: int, batches: int) -> None:
    import resource

    _, trainer, x, y, n = make(dim, n_sup=n_sup)
    for _ in range(batches):
        trainer.train_batch(x, y, n)
    print(json.dumps({"n_sup": n_sup, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(dim: int, threads: int) -> list[dict]:
    out = []
    for n_sup in (4, 32):
        cmd = [
            sys.executable,
            __file__,
            "--child-rss",
            str(n_sup),
            "--dims",
            str(dim),
            "--threads",
            str(threads),
            "--mixer",
            MIXER["mixer"],
        ]
        out.append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dims", default="64,128")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json")
    p.add_argument("--mixer", choices=("attention", "mlp"), default="attention")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: overhead,memory,throughput")
    p.add_argument("--compile", action="store_true", help="throughput also with f_L / f_H torch.compiled")
    p.add_argument("--bfloat16", action="store_true", help="throughput also with net.precision=bfloat16")
    p.add_argument("--batches", default="64,256", help="throughput batch sizes")
    p.add_argument("--child-rss", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    MIXER["mixer"] = args.mixer
    setup_torch(args.threads)
    dims = [int(d) for d in args.dims.split(",")]
    if args.child_rss:
        peak_rss_child(args.child_rss, dims[0], batches=3)
        return 0
    skip = set(args.skip.split(",")) - {""}
    peak = matmul_peak(args.threads)
    rows = {"threads": args.threads, "mixer": args.mixer}
    print(f"threads {args.threads}, mixer {args.mixer}, matmul peak {peak:.1f} GFLOP/s\n")
    if "overhead" not in skip:
        rows["overhead"] = [overhead(d, args.repeats) for d in dims]
        print("| D | Pyro step | plain torch step | median ratio (target <= 1.15) |\n|---|---|---|---|")
        for r in rows["overhead"]:
            print(f"| {r['dim']} | {r['pyro_ms']:.1f} ms | {r['torch_ms']:.1f} ms | {r['median_ratio']:.3f} |")
    if "memory" not in skip:
        rows["memory"] = m4, m32 = memory(dims[0], args.threads)
        print(f"\npeak RSS: N_sup=4 {m4['peak_rss_mb']:.0f} MB, N_sup=32 {m32['peak_rss_mb']:.0f} MB "
              f"({100 * (m32['peak_rss_mb'] / m4['peak_rss_mb'] - 1):+.1f}%, target within 10%)\n")  # fmt: skip
    if "throughput" not in skip:
        modes = [
            (c, pr) for pr in ("float32", "bfloat16")[: 1 + args.bfloat16] for c in (False, True)[: 1 + args.compile]
        ]
        batches = [int(b) for b in args.batches.split(",")]
        rows["throughput"] = [throughput(d, b, args.repeats, peak, c, pr)
                              for d in dims for b in batches for c, pr in modes]  # fmt: skip
        print("| D | batch | core | step | puzzles/s | GFLOP/s | share of matmul peak (target >= 40%) | compile |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows["throughput"]:
            comp = f"{r['compile_s']:.0f} s" if r["compiled"] else "–"
            core = f"{'compiled' if r['compiled'] else 'eager'}, {r['precision']}"
            print(f"| {r['dim']} | {r['batch']} | {core} | {r['step_ms']:.1f} ms | "
                  f"{r['puzzles_per_s']:.0f} | {r['gflops']:.1f} | {100 * r['share_of_peak']:.0f}% | {comp} |")  # fmt: skip
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
