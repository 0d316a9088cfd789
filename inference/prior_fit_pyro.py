"""The first step's prior of a generation run against the guide's aggregate posterior, and an
M-step that refits the prior's low-rank directions to it (Pyro runs).

For an empty input u_1 is the same for every sample, so the first step's prior is one Gaussian
over the (L, D) noise: N(μ, σ²), or N(μ, diag σ² + W Wᵀ) with priors.rank. Whitened by it, the
guide's means over the training targets show where the posterior puts its information
(`shifts`); the prior that maximises the ELBO for the trained guide and transitions, among
Gaussians with this σ and r extra directions, is the probabilistic PCA of those shifts
(`refit_prior`: W = σ ⊙ V_r Λ_r^½, the top r directions and their variances), a variational EM
step on W after training; or, with priors.components = K, a K-component Gaussian mixture fitted
to the shifts' coordinates along those directions (EM), which follows an aggregate of many
clusters (one per training digit) where one Gaussian smears them. benchmarks/prior_hole.py
measures both (docs/recipe.md).
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


def shift_coords(sh: Shifts, mu_q, rank: int) -> np.ndarray:
    """The whitened shifts of guide means `mu_q` (N, L, D) along the training shifts' top `rank`
    principal directions (N, rank), centred on their mean."""
    white = whiten(sh.root, (mu_q - sh.mu).reshape(len(mu_q), -1))  # (N, L·D)
    return ((white - sh.m) @ sh.vt[:rank].T).numpy()


def fit_mixture(coords, k: int, seed: int, covariance: str = "full"):
    """A k-component Gaussian mixture ("full" or "tied" covariances, scikit-learn's EM) fitted to
    the training shifts' coordinates `coords` (N, rank) (shift_coords)."""
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(k, covariance_type=covariance, random_state=seed).fit(coords)


def refit_prior(
    folder: str | Path, out: str | Path, rank: int, force: bool = False, components: int = 1, seed: int = 0
) -> Path:
    """A new run folder holding `folder`'s run (rank 0) with priors.rank = `rank` and W set to the
    top `rank` directions of the guide's whitened shifts over the training targets, scaled by
    √variance and by σ. With `components` = K > 1 (priors.components) the shifts' coordinates
    along those directions get a K-component Gaussian mixture instead (EM, full covariances,
    `seed`), and component k becomes N(μ + o_k, diag σ² + W_k W_kᵀ) with o_k = σ ⊙ (m + V_r c_k),
    W_k = σ ⊙ V_r chol(C_k) (c_k, C_k its mean and covariance, m the shifts' mean), π_k its weight.
    Every other weight, the history and the data set move over; the optimiser starts fresh
    (training can go on with --resume). Its samples are prior samples of that model."""
    from gram_ppl.inference import svi_pyro
    from gram_ppl.inference.loading import convert_weights_run, load_run

    run = load_run(folder)
    if run.config.priors.rank:
        raise ConfigError(f"{folder} already has a low-rank prior (priors.rank = {run.config.priors.rank})")
    if rank < 1 or components < 1:
        raise ConfigError(f"rank and components must be >= 1, got {rank}, {components}")
    sh = shifts(run, np.asarray(run.data.train.y))
    if rank > len(sh.lam) or components > len(sh.lam):
        raise ConfigError(f"rank, components: at most {len(sh.lam)} here (one per training target)")
    weights = svi_pyro.weights(run.net)  # the sampling weights, named as torch names them
    v = sh.vt[:rank].T  # (L·D, r): V_r
    if components == 1:
        w = sh.root[:, None] * (v * sh.lam[:rank].sqrt())  # (L·D, r): σ ⊙ V_r Λ_r^½
        weights["prior_factor"] = w.reshape(*sh.mu.shape, rank).float().numpy()  # (L, D, r)
    else:
        gmm = fit_mixture(shift_coords(sh, sh.mu_q, rank), components, seed)
        means = torch.as_tensor(gmm.means_)  # (K, r), float64
        chol = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_))  # (K, r, r)
        offset = sh.root * (sh.m + means @ v.T)  # (K, L·D): σ ⊙ (m + V_r c_k)
        w = sh.root[:, None] * (v @ chol)  # (K, L·D, r): σ ⊙ V_r chol(C_k)
        weights["prior_factor"] = w.reshape(components, *sh.mu.shape, rank).float().numpy()  # (K, L, D, r)
        weights["prior_offset"] = offset.reshape(components, *sh.mu.shape).float().numpy()  # (K, L, D)
        weights["prior_logit"] = np.log(gmm.weights_).astype(np.float32)  # (K,)
    priors = dataclasses.replace(run.config.priors, rank=rank, components=components)
    return convert_weights_run(folder, out, dataclasses.replace(run.config, priors=priors), weights, force)
