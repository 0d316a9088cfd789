"""The first step's prior of a generation run against the guide's aggregate posterior, and an
M-step that refits the prior's low-rank directions to it (Pyro runs).

For an empty input u_1 is the same for every sample, so the first step's prior is one Gaussian
over the (L, D) noise: N(μ, σ²), or N(μ, diag σ² + W Wᵀ) with priors.rank. Whitened by it, the
guide's means over the training targets show where the posterior puts its information
(`shifts`); the prior that maximises the ELBO for the trained guide and transitions, among
Gaussians with this σ and r extra directions, is the probabilistic PCA of those shifts
(`refit_prior`: W = σ ⊙ V_r Λ_r^½, the top r directions and their variances), a variational EM
step on W after training. benchmarks/prior_hole.py measures both (docs/recipe.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from gram_ppl.config import ConfigError


class Shifts(NamedTuple):
    """The first transition from the empty input: the prior's μ (L, D), a root of its covariance
    (σ (L·D,), or a Cholesky factor (L·D, L·D) with priors.rank), each entry's variance (L·D,);
    the guide's μ_q, σ_q (N, L, D) for N training targets; the mean m (L·D,) of their whitened
    shifts Σ^-½ (μ_q − μ), and the shifts' principal directions vt (k, L·D) and variances lam (k,)."""

    mu: torch.Tensor
    root: torch.Tensor
    var: torch.Tensor
    mu_q: torch.Tensor
    sigma_q: torch.Tensor
    m: torch.Tensor
    vt: torch.Tensor
    lam: torch.Tensor


def check_generation_run(run) -> None:
    """Refuse what the first-step analysis does not fit: a NumPyro run, a run without an empty
    input or noise, a guide acting beyond the first transition."""
    cfg = run.config
    where = run.folder or "the run"
    if cfg.backend != "pyro":
        raise ConfigError(
            f"{where} is a {cfg.backend} run: convert it first (gram convert {where} --to pyro --out DIR)"
        )
    if not cfg.task.generates or cfg.fit.variant != "gram":
        raise ConfigError(f"{where}: a GRAM generation run is needed (empty input, stochastic steps)")
    if cfg.fit.T != 1 or cfg.fit.guide_steps != 1:
        raise ConfigError(f"{where}: the guide must act in the first transition only (fit.T = 1, fit.guide_steps = 1)")


def first_step(run, targets) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor]]:
    """The first transition from the empty input for `targets` (N, L_y): the prior's (μ, σ[, W])
    and the guide's (μ_q, σ_q), (N, L, D) each (W (N, L, D, r) with priors.rank)."""
    check_generation_run(run)
    net = run.net
    x = torch.ones(len(targets), net.x_len, dtype=torch.long)  # (N, L_x): the empty input
    with torch.no_grad():
        h, l = net.initial_state(len(targets))  # (N, L, D) each
        u, _ = net.transition(h, l, net.embed(x))  # (N, L, D)
        prior = net.prior(u)  # μ, σ equal over N
        return prior, net.posterior(u, torch.as_tensor(np.asarray(targets, np.int64)))


def shifts(run, targets) -> Shifts:
    """The first step's prior and the guide's whitened shifts for `targets` (N, L_y)."""
    (mu, sigma, *factor), (mu_q, sigma_q) = first_step(run, targets)
    root = sigma[0].double().reshape(-1)  # (L·D,)
    var = root**2
    if factor:
        w = factor[0][0].detach().double().reshape(root.numel(), -1)  # (L·D, r)
        var = var + (w**2).sum(-1)
        root = torch.linalg.cholesky(torch.diag(root**2) + w @ w.T)  # (L·D, L·D)
    mu, mu_q, n = mu[0].double(), mu_q.double(), len(targets)
    white = whiten(root, (mu_q - mu).reshape(n, -1))  # (N, L·D)
    m = white.mean(0)
    _, s, vt = torch.linalg.svd(white - m, full_matrices=False)
    return Shifts(mu, root, var, mu_q, sigma_q.double(), m, vt, s**2 / n)


def whiten(root, v):
    """Σ^-½ v for rows v (M, L·D): the prior's own coordinates (N(0, I) under the prior)."""
    return v / root if root.dim() == 1 else torch.linalg.solve_triangular(root, v.T, upper=False).T


def colour(root, v):
    """Σ^½ v for rows v (M, L·D): back to the noise's coordinates."""
    return v * root if root.dim() == 1 else v @ root.T


def refit_prior(folder: str | Path, out: str | Path, rank: int, force: bool = False) -> Path:
    """A new run folder holding `folder`'s run (rank 0) with priors.rank = `rank` and W set to the
    top `rank` directions of the guide's whitened shifts over the training targets, scaled by
    √variance and by σ. Every other weight, the history and the data set move over; the
    optimiser starts fresh (training can go on with --resume). Its samples are prior samples of
    that model."""
    from gram_ppl.inference import svi_pyro
    from gram_ppl.inference.loading import convert_weights_run, load_run

    run = load_run(folder)
    if run.config.priors.rank:
        raise ConfigError(f"{folder} already has a low-rank prior (priors.rank = {run.config.priors.rank})")
    if rank < 1:
        raise ConfigError(f"rank must be >= 1, got {rank}")
    sh = shifts(run, np.asarray(run.data.train.y))
    if rank > len(sh.lam):
        raise ConfigError(f"rank: at most {len(sh.lam)} directions here (one per training target)")
    w = sh.root[:, None] * (sh.vt[:rank].T * sh.lam[:rank].sqrt())  # (L·D, r): σ ⊙ V_r Λ_r^½
    weights = svi_pyro.weights(run.net)  # the sampling weights, named as torch names them
    weights["prior_factor"] = w.reshape(*sh.mu.shape, rank).float().numpy()  # (L, D, r)
    priors = dataclasses.replace(run.config.priors, rank=rank)
    return convert_weights_run(folder, out, dataclasses.replace(run.config, priors=priors), weights, force)
