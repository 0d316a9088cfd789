"""The prior hole of a generation run: how far the first step's prior p_θ(ε_1 | u_1) is from
the guide's aggregate posterior over the training targets, and what samples would be worth if
the first step drew from that aggregate instead. A diagnostic of the trained weights, not a
sampler of the model: only its "prior" rows are prior samples.

    .venv/bin/python benchmarks/prior_hole.py RUN [--ranks 0,8,32] [--mixtures 10,100 [--mixture-rank 32]
        [--mixture-covariance full|tied]] [--samples 1000] [--seed 0] [--json out.json]

For an empty input u_1 is the same for every sample, so the first step's prior is one Gaussian
over the (L, D) noise: N(μ, σ²) by default, N(μ, diag σ² + W Wᵀ) with priors.rank. The guide's
means μ_q(u_1, y_i) over the training targets y_i, whitened by the prior (Σ^-½ (μ_q − μ)), show
where the posterior puts its information: their variance along the top principal directions
("spectrum") is what the prior misses there (the aggregate's variance along a direction is about
that plus 1 where σ_q ≈ σ).
Then `--samples` boards are drawn with the first transition's noise taken from

- rank 0: the prior itself (the "prior" row);
- rank r > 0: the prior plus the top r directions of the whitened shifts, N(μ + Σ^½ m, Σ^½ (I + V_r Λ_r V_rᵀ) Σ^½ᵀ):
  a Gaussian fitted to the aggregate posterior after training (ex-post, as in two-stage VAEs);
- "mixture K": the same with the shifts' coordinates along the top `--mixture-rank` directions
  drawn from a K-component Gaussian mixture (full covariances, or one covariance all components
  share with `--mixture-covariance tied`; scikit-learn's EM) fitted to them instead of one
  Gaussian: whether a prior that is a mixture would close the hole that one Gaussian leaves
  (K = 1 is the rank row again, up to EM). Each mixture row also gives `heldout_loglik`, the mean
  log-density of the held-out targets' guide means under the mixture with every component
  widened by the draw's unit noise: a way to choose K and the rank that does not read the
  reported metric;
- "aggregate": q_φ(ε_1 | u_1, y_i) of a random training target y_i (its reconstructions: the
  ceiling of what the transitions and decoder can do; copies of training targets count here),

every later step from the prior, at τ = 1 and the run's sample depth (config.sample_depth). Each
row is scored as `benchmarks/depth_metric.py` scores it (digits: recognisable share and Fréchet
distance; grids: valid share and distinct valid). Needs a Pyro run whose guide acts only in the
first transition (fit.T = 1, fit.guide_steps = 1: the defaults); a NumPyro run can be converted
(`gram convert`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json  # noqa: E402

from gram_ppl.config import ConfigError, sample_depth  # noqa: E402
from gram_ppl.inference.api import generation_report, load_run  # noqa: E402
from gram_ppl.inference.prior_fit_pyro import colour, first_step, fit_mixture, shift_coords, shifts  # noqa: E402


def boards_from(run, eps):
    """Argmax boards (M, L_y) of prior rollouts from the empty input whose first transition's noise
    is `eps` (M, L, D), at the run's sample depth."""
    import torch
    from pyro import poutine

    net, cfg = run.net, run.config
    x = torch.ones(len(eps), net.x_len, dtype=torch.long)  # (M, L_x)
    model = poutine.condition(run.mod.model, data={"eps_0_0": eps.float()})
    with torch.no_grad():
        h, _ = model(x, None, net=net, cfg=cfg, priors=cfg.priors, steps=range(sample_depth(cfg)),
                     truncate=False, observe="none")  # fmt: skip
        return net.decode(h).argmax(-1).numpy()  # (M, L_y)


def mixture_draws(gmm, samples: int, seed: int) -> np.ndarray:
    """`samples` draws (M, rank) from a fitted mixture, in random component order."""
    draws, _ = gmm.sample(samples)  # (M, rank), grouped by component
    return draws[np.random.default_rng(seed).permutation(samples)]


def widened_loglik(gmm, coords) -> float:
    """Mean log-density of `coords` (N, rank) under the mixture with every component widened by
    the identity: the whitened first-step noise a draw adds to its coordinates (ξ ~ N(0, I)), so
    this scores held-out guide means the way the sampler would reach them, where the plain
    mixture's density rewards components collapsed onto single training points."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    k, r = gmm.means_.shape
    cov = gmm.covariances_ if gmm.covariance_type == "full" else np.broadcast_to(gmm.covariances_, (k, r, r))
    logs = [multivariate_normal(gmm.means_[j], cov[j] + np.eye(r)).logpdf(coords) for j in range(k)]  # k × (N,)
    return float(logsumexp(np.stack(logs, -1).reshape(len(coords), k) + np.log(gmm.weights_), -1).mean())


def hole_rows(
    folder: str,
    ranks: list[int],
    samples: int,
    seed: int = 0,
    mixtures: list[int] = (),
    mixture_rank: int = 32,
    covariance: str = "full",
) -> dict:
    import torch

    run = load_run(folder)
    task = run.task
    train_y = np.asarray(run.data.train.y)
    try:
        sh = shifts(run, train_y)  # refuses a run the first-step analysis does not fit
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    mu, root, var, mu_q, sigma_q, m, vt, lam = sh.mu, sh.root, sh.var, sh.mu_q, sh.sigma_q, sh.m, sh.vt, sh.lam
    shape, n = mu.shape, len(train_y)
    if max([*ranks, mixture_rank if mixtures else 0]) > len(lam):
        raise SystemExit(f"--ranks, --mixture-rank: at most {len(lam)} directions here")
    if mixtures and max(mixtures) > n:
        raise SystemExit(f"--mixtures: at most {n} components here (one per training target)")
    gen = torch.Generator().manual_seed(seed)  # the first step's draws
    torch.manual_seed(seed)  # the later steps' prior draws (torch's global generator): a rerun is exact
    judge, rows = None, []

    def score(label, eps):
        nonlocal judge
        boards = boards_from(run, eps)
        if task.checker:
            blank = np.ones(task.x_len, dtype=np.uint8)
            conflicts = task.conflicts(blank, boards)
            row = generation_report(boards, conflicts == 0, train_y, run.data.test.y, conflicts, task.grid_count)
        else:
            from gram_ppl.tasks.digits import image_metrics, judge_for

            judge = judge or judge_for(train_y)
            row = image_metrics(boards, train_y, judge)
        rows.append({"first_step": label, **row})

    for r in ranks:
        xi = torch.randn(samples, m.numel(), generator=gen, dtype=torch.float64)  # (M, L*D)
        if r:
            z = torch.randn(samples, r, generator=gen, dtype=torch.float64)  # (M, r)
            xi = xi + m + (z * lam[:r].sqrt()) @ vt[:r]
        score("prior" if r == 0 else f"rank {r}", mu + colour(root, xi).reshape(samples, *shape))
    if mixtures:  # the held-out targets' guide means, to score each mixture by its widened likelihood
        coords = shift_coords(sh, mu_q, mixture_rank)  # (N, rank)
        _, (test_mu_q, _) = first_step(run, np.asarray(run.data.test.y))
        held = shift_coords(sh, test_mu_q.double(), mixture_rank)  # (N_test, rank)
    for k in mixtures:
        gmm = fit_mixture(coords, k, seed, covariance)
        c = torch.from_numpy(mixture_draws(gmm, samples, seed))  # (M, rank)
        xi = torch.randn(samples, m.numel(), generator=gen, dtype=torch.float64) + m + c @ vt[:mixture_rank]
        score(
            f"mixture {k} (rank {mixture_rank}{', tied' if covariance == 'tied' else ''})",
            mu + colour(root, xi).reshape(samples, *shape),
        )
        rows[-1]["heldout_loglik"] = widened_loglik(gmm, held)
    i = torch.randint(n, (samples,), generator=gen)
    score("aggregate", mu_q[i] + sigma_q[i] * torch.randn(samples, *shape, generator=gen, dtype=torch.float64))
    spread = float((sigma_q.reshape(n, -1) ** 2 / var).mean())  # E[σ_q² / Σ_ii] over targets and entries
    return {"run": folder, "spectrum": [round(float(v), 3) for v in lam[:20]], "shift_total": float(lam.sum()),
            "posterior_var_ratio": spread, "targets": n, "rows": rows}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--ranks", default="0,8,32", help="directions of the fitted Gaussian; 0: the prior itself")
    p.add_argument("--mixtures", default="", help="components of fitted Gaussian mixtures, e.g. 10,100")
    p.add_argument("--mixture-rank", type=int, default=32, help="directions the mixtures are fitted in")
    p.add_argument("--mixture-covariance", choices=("full", "tied"), default="full")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    ranks = sorted({int(r) for r in args.ranks.split(",")} | {0})
    mixtures = sorted({int(k) for k in args.mixtures.split(",") if k.strip()})
    if min(ranks) < 0 or args.samples < 1 or (mixtures and min(mixtures) < 1) or args.mixture_rank < 1:
        p.error("--ranks must be >= 0, --samples, --mixtures and --mixture-rank >= 1")
    from gram_ppl.inference.backend import get_backend

    get_backend("pyro").setup(1)  # one thread, denormals flushed
    out = hole_rows(args.run, ranks, args.samples, args.seed, mixtures, args.mixture_rank, args.mixture_covariance)
    print(f"whitened posterior shifts over {out['targets']} training targets: variance along the top directions "
          f"{out['spectrum'][:8]} (sum over all {out['shift_total']:.1f}); E[σ_q²/σ²] = {out['posterior_var_ratio']:.3f}")  # fmt: skip
    keys = [k for k in ("recognisable", "frechet", "class_entropy", "valid", "distinct_valid", "copies", "distinct")
            if k in out["rows"][0]]  # fmt: skip
    for r in out["rows"]:
        if "heldout_loglik" in r:
            print(f"{r['first_step']}: held-out guide means, widened log-likelihood {r['heldout_loglik']:.2f}")
    print("| first step | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for r in out["rows"]:
        print(
            f"| {r['first_step']} | "
            + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
