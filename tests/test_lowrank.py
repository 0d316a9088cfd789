"""The low-rank prior (PriorConfig.rank) and its mixture (PriorConfig.components): their densities
(and the low-rank closed-form KL) in both backends, their temperature, their config checks, and
that they train."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from tiny import tiny_config

from gram_ppl.config import ConfigError, PriorConfig, TaskConfig
from gram_ppl.models.lowrank_numpyro import LowRankNoise as JaxLowRank
from gram_ppl.models.lowrank_numpyro import MixtureNoise as JaxMixture
from gram_ppl.models.lowrank_numpyro import kl_lowrank as kl_jax
from gram_ppl.models.lowrank_pyro import LowRankNoise, MixtureNoise, kl_lowrank

B, L, D, R = 3, 4, 5, 2


def params(seed, rank=R):
    rng = np.random.default_rng(seed)
    loc, scale = rng.normal(size=(B, L, D)), rng.uniform(0.2, 1.2, (B, L, D))
    return [a.astype(np.float32) for a in (loc, scale, 0.4 * rng.normal(size=(B, L, D, rank)))]


def flat_mvn(loc, scale, factor):
    t = [torch.as_tensor(a) for a in (loc, scale, factor)]
    return torch.distributions.LowRankMultivariateNormal(t[0].flatten(-2), t[2].flatten(-3, -2), t[1].flatten(-2) ** 2)


def test_the_closed_form_kl_matches_torch_and_the_jax_twin():
    q, p = params(0, rank=3), params(1)
    expected = torch.distributions.kl_divergence(flat_mvn(*q), flat_mvn(*p)).numpy()  # (B,)
    np.testing.assert_allclose(kl_lowrank(*map(torch.as_tensor, q + p)).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(kl_jax(*map(jnp.asarray, q + p))), expected, rtol=1e-5)
    diag = torch.distributions.kl_divergence(flat_mvn(q[0], q[1], np.zeros((B, L, D, 1), np.float32)), flat_mvn(*p))
    registered = torch.distributions.kl_divergence(
        dist.Normal(*map(torch.as_tensor, q[:2])).to_event(2), LowRankNoise(*map(torch.as_tensor, p))
    )  # what the Pyro objective's balanced_kl calls for a diagonal guide
    np.testing.assert_allclose(registered.numpy(), diag.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(kl_jax(*map(jnp.asarray, q[:2]), None, *map(jnp.asarray, p))), diag.numpy(), rtol=1e-5
    )
    same = kl_lowrank(*map(torch.as_tensor, p + p))
    np.testing.assert_allclose(same.numpy(), 0.0, atol=1e-3)


def test_densities_agree_and_samples_have_the_covariance():
    p = params(2)
    value = np.random.default_rng(3).normal(size=(B, L, D)).astype(np.float32)
    lp = LowRankNoise(*map(torch.as_tensor, p)).log_prob(torch.as_tensor(value)).numpy()
    np.testing.assert_allclose(lp, flat_mvn(*p).log_prob(torch.as_tensor(value).flatten(-2)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(JaxLowRank(*map(jnp.asarray, p)).log_prob(jnp.asarray(value))), lp, rtol=1e-5)
    w = p[2][0].reshape(L * D, R)
    cov = np.diag(p[1][0].reshape(-1) ** 2) + w @ w.T
    torch.manual_seed(0)
    for draws in (
        LowRankNoise(*map(torch.as_tensor, p)).rsample((20000,)).numpy(),
        np.asarray(JaxLowRank(*map(jnp.asarray, p)).sample(jax.random.key(0), (20000,))),
    ):
        assert draws.shape == (20000, B, L, D)
        emp = np.cov(draws[:, 0].reshape(20000, -1).T)
        assert np.abs(emp - cov).max() < 0.06  # Monte Carlo error of 20,000 draws at these scales


def test_temperature_scales_the_directions_too():
    from gram_ppl.inference.tempering import _tempered

    p = LowRankNoise(*map(torch.as_tensor, params(4)))
    half = _tempered(p, 0.5, dist)
    assert torch.equal(half.factor, 0.5 * p.factor) and torch.equal(half.scale, 0.5 * p.scale)
    cold = _tempered(p, 0.0, dist)
    assert isinstance(cold, dist.Delta) and cold.event_dim == 2 and torch.equal(cold.v, p.loc)


def mixture_params(seed, k=3):
    rng = np.random.default_rng(seed)
    loc, scale, _ = params(seed)
    factor, offset = 0.4 * rng.normal(size=(B, k, L, D, R)), 2.0 * rng.normal(size=(B, k, L, D))
    return [loc, scale] + [a.astype(np.float32) for a in (factor, offset, rng.normal(size=(B, k)))]


def test_mixture_density_is_torchs_mixture_in_both_backends():
    p = mixture_params(5)
    loc, scale, factor, offset, logit = map(torch.as_tensor, p)
    comps = torch.distributions.LowRankMultivariateNormal(
        (loc[:, None] + offset).flatten(-2),
        factor.flatten(-3, -2),
        (scale.flatten(-2) ** 2)[:, None].expand(B, 3, L * D),
    )
    reference = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=logit), comps)
    value = torch.as_tensor(np.random.default_rng(6).normal(size=(B, L, D)).astype(np.float32))
    lp = MixtureNoise(*map(torch.as_tensor, p)).log_prob(value).numpy()  # (B,)
    np.testing.assert_allclose(lp, reference.log_prob(value.flatten(-2)).numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(JaxMixture(*map(jnp.asarray, p)).log_prob(jnp.asarray(value.numpy()))), lp, rtol=1e-5
    )
    one = MixtureNoise(
        loc, scale, factor[:, :1], torch.zeros_like(offset[:, :1]), logit[:, :1]
    )  # K = 1: the low-rank density
    np.testing.assert_allclose(
        one.log_prob(value).numpy(), LowRankNoise(loc, scale, factor[:, 0]).log_prob(value).numpy(), rtol=1e-5
    )


def test_mixture_samples_have_the_mixtures_mean_and_covariance():
    p = mixture_params(7)
    pi = np.exp(p[4][0]) / np.exp(p[4][0]).sum()  # (K,)
    centres = (p[0][0] + p[3][0]).reshape(3, -1)  # (K, L·D)
    w = p[2][0].reshape(3, L * D, R)
    mean = pi @ centres
    within = sum(pi[k] * (np.diag(p[1][0].reshape(-1) ** 2) + w[k] @ w[k].T) for k in range(3))
    cov = within + sum(pi[k] * np.outer(centres[k] - mean, centres[k] - mean) for k in range(3))
    torch.manual_seed(0)
    n = 40000
    for draws in (
        MixtureNoise(*map(torch.as_tensor, p)).sample((n,)).numpy(),
        np.asarray(JaxMixture(*map(jnp.asarray, p)).sample(jax.random.key(0), (n,))),
    ):
        assert draws.shape == (n, B, L, D)
        flat = draws[:, 0].reshape(n, -1)
        assert np.abs(flat.mean(0) - mean).max() < 0.08
        assert np.abs(np.cov(flat.T) - cov).max() < 0.25  # Monte Carlo error of 40,000 draws (entries up to ~10)
    np.testing.assert_allclose(MixtureNoise(*map(torch.as_tensor, p)).mean[0].reshape(-1).numpy(), mean, rtol=1e-5)


def test_mixture_temperature_scales_each_component_not_the_offsets():
    from gram_ppl.inference.tempering import _tempered

    p = MixtureNoise(*map(torch.as_tensor, mixture_params(8)))
    half = _tempered(p, 0.5, dist)
    assert half.spread == 0.5 and all(getattr(half, k) is getattr(p, k) for k in p.arg_constraints)  # views kept
    value = torch.as_tensor(np.random.default_rng(9).normal(size=(B, L, D)).astype(np.float32))
    narrow = MixtureNoise(p.loc, 0.5 * p.scale, 0.5 * p.factor, p.offset, p.logit)  # σ and W_k halved, o_k kept
    torch.testing.assert_close(half.log_prob(value), narrow.log_prob(value))
    jax_half = JaxMixture(*(jnp.asarray(getattr(p, k).numpy()) for k in p.arg_constraints), 0.5)
    np.testing.assert_allclose(
        np.asarray(jax_half.log_prob(jnp.asarray(value.numpy()))), narrow.log_prob(value).numpy(), rtol=1e-5
    )
    cold = _tempered(p, 0.0, dist).sample((50,))  # (50, B, L, D): every draw a component's centre μ + o_k
    centres = p.loc[:, None] + p.offset  # (B, K, L, D)
    gap = (cold[:, :, None] - centres[None]).abs().flatten(-2).max(-1).values.min(-1).values  # (50, B)
    assert float(gap.max()) < 1e-6


def test_config_checks():
    with pytest.raises(ConfigError, match="rank must be >= 0"):
        PriorConfig(rank=-1)
    with pytest.raises(ConfigError, match="family='normal'"):
        PriorConfig(rank=2, family="studentt")
    with pytest.raises(ConfigError, match="components must be >= 1"):
        PriorConfig(rank=2, components=0)
    with pytest.raises(ConfigError, match="only with rank >= 1"):
        PriorConfig(components=3)


def test_rank_zero_adds_no_parameters_and_rank_learns_from_the_start(tmp_path):
    from gram_ppl.inference import svi_pyro
    from gram_ppl.inference.run import fit
    from gram_ppl.models import gram_pyro
    from gram_ppl.models.priors import PRIORS
    from gram_ppl.networks.torch_nets import build_net
    from gram_ppl.tasks import get_task

    cfg = dataclasses.replace(tiny_config(T=1), task=TaskConfig(name="digits", size=8), priors=PRIORS)
    task = get_task("digits", 8)
    assert not any("factor" in k for k in build_net(cfg, task).state_dict())  # old checkpoints still load
    ranked = dataclasses.replace(cfg, priors=dataclasses.replace(PRIORS, rank=4))
    trainer = svi_pyro.make_trainer(gram_pyro, ranked, task)
    from gram_ppl.data import build_dataset

    train = build_dataset(ranked.task).train  # one batch of real digits
    x, y = (torch.as_tensor(np.asarray(a[:8], np.int64)) for a in (train.x, train.y))
    svi_pyro.trajectory_loss(gram_pyro, trainer.net, ranked, ranked.priors, x, y, None, range(1), True).loss.backward()
    assert trainer.net.prior_factor.grad.abs().sum() > 0  # the guided step's KL moves W: it starts off the saddle at 0
    trainer.net.zero_grad()
    svi_pyro.trajectory_loss(
        gram_pyro, trainer.net, ranked, ranked.priors, x, y, None, range(1, 2), True
    ).loss.backward()
    assert trainer.net.prior_factor.grad is None  # a step the guide leaves: the diagonal prior, no W
    fit(ranked, tmp_path / "run", steps=2, progress=False, eval_puzzles=4)
    from gram_ppl.inference.api import generate, load_run

    run = load_run(tmp_path / "run")
    assert run.config.priors.rank == 4 and generate(run, 6).boards.shape == (6, 64)


def test_a_mixture_prior_learns_every_part_where_the_guide_acts_and_samples(tmp_path):
    from gram_ppl.data import build_dataset
    from gram_ppl.inference import svi_pyro
    from gram_ppl.inference.api import generate, load_run
    from gram_ppl.inference.run import fit
    from gram_ppl.models import gram_pyro
    from gram_ppl.models.priors import PRIORS
    from gram_ppl.tasks import get_task

    cfg = dataclasses.replace(tiny_config(T=1), task=TaskConfig(name="digits", size=8))
    cfg = dataclasses.replace(cfg, priors=dataclasses.replace(PRIORS, rank=2, components=3))
    task = get_task("digits", 8)
    trainer = svi_pyro.make_trainer(gram_pyro, cfg, task)
    net = trainer.net
    assert net.prior_factor.shape[:1] == net.prior_offset.shape[:1] == net.prior_logit.shape == (3,)
    train = build_dataset(cfg.task).train
    x, y = (torch.as_tensor(np.asarray(a[:8], np.int64)) for a in (train.x, train.y))
    svi_pyro.trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(1), True).loss.backward()
    for part in (net.prior_factor, net.prior_offset, net.prior_logit):  # the Monte Carlo KL reaches each
        assert part.grad is not None and part.grad.abs().sum() > 0
    fit(cfg, tmp_path / "run", steps=2, progress=False, eval_puzzles=4)
    run = load_run(tmp_path / "run")
    assert run.config.priors.components == 3 and generate(run, 6).boards.shape == (6, 64)
