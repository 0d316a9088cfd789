"""The guide follows the prior's family (issue 27): no KL floor at initialisation for any family in
either backend, a Normal guide under a studentt prior pays the floor `kl_floor` computes, and a
fit warns when that floor is above the KL ceiling."""

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch
from pyro import poutine
from tiny import tiny_config

from gram_ppl import build_dataset
from gram_ppl.config import ConfigError, FitConfig, gram_config_from_dict, guide_family, to_dict
from gram_ppl.inference.objective import guided_dims, kl_floor
from gram_ppl.inference.svi_pyro import trajectory_loss
from gram_ppl.models import gram_pyro
from gram_ppl.networks.torch_nets import build_net

FAMILIES = ("normal", "studentt", "laplace")


@pytest.fixture(scope="module")
def data():
    return build_dataset(tiny_config().task)


def _setup(data, family, guide=None, seed=0):
    cfg = tiny_config(guide_steps=0, guide_family=guide)
    cfg = dataclasses.replace(cfg, priors=dataclasses.replace(gram_pyro.PRIORS, family=family))
    torch.manual_seed(seed)
    net = build_net(cfg, data.task)
    x = torch.as_tensor(data.train.x[:8].astype(np.int64))
    y = torch.as_tensor(data.train.y[:8].astype(np.int64))
    return cfg, net, x, y


@pytest.mark.parametrize("family", FAMILIES)
def test_the_guide_is_in_the_prior_family_and_its_kl_at_initialisation_is_zero_in_pyro(data, family):
    cfg, net, x, y = _setup(data, family)
    kw = dict(net=net, cfg=cfg, priors=cfg.priors, steps=range(2))
    guide_tr = poutine.trace(gram_pyro.guide).get_trace(x, y, **kw)
    model_tr = poutine.trace(gram_pyro.model).get_trace(x, y, **kw)
    assert type(guide_tr.nodes["eps_0_0"]["fn"].base_dist) is type(model_tr.nodes["eps_0_0"]["fn"].base_dist)
    if family == "studentt":
        assert (guide_tr.nodes["eps_0_0"]["fn"].base_dist.df == cfg.priors.df).all()
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), truncate=True)
    assert terms.kl.abs().max() < 1e-4  # (S,) nats per step: q = p at initialisation


@pytest.mark.parametrize("family", FAMILIES)
def test_the_guide_is_in_the_prior_family_and_its_kl_at_initialisation_is_zero_in_numpyro(family):
    import jax
    import jax.numpy as jnp
    from test_numpyro_backend import pair

    from gram_ppl.inference import svi_numpyro
    from gram_ppl.models import gram_numpyro
    from gram_ppl.networks import flax_nets

    cfg, task, _, fnet, _ = pair(family)
    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, guide_steps=0))
    params = flax_nets.init_params(fnet, 0)  # heads as built: the guide's equal to the prior's
    rng = np.random.default_rng(3)
    x, y = rng.integers(1, 3, (3, task.x_len)), rng.integers(1, 3, (3, task.y_len))
    terms = svi_numpyro.trajectory_loss(params, jax.random.key(0), gram_numpyro, fnet, cfg, cfg.priors,
                                        jnp.asarray(x), jnp.asarray(y), None, range(2), True)  # fmt: skip
    assert float(jnp.abs(terms.kl).max()) < 1e-4


def test_laplace_kl_in_numpyro_is_torch_closed_form():
    import jax.numpy as jnp
    import numpyro.distributions as ndist

    from gram_ppl.inference.objective_numpyro import _kl_laplace_laplace

    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(2, 3, 4))
    b1, b2 = rng.uniform(0.1, 2.0, size=(2, 3, 4))
    ours = _kl_laplace_laplace(
        ndist.Laplace(jnp.asarray(m1), jnp.asarray(b1)).to_event(2), ndist.Laplace(jnp.asarray(m2), jnp.asarray(b2))
    )
    ref = torch.distributions.kl_divergence(
        torch.distributions.Laplace(torch.as_tensor(m1), torch.as_tensor(b1)),
        torch.distributions.Laplace(torch.as_tensor(m2), torch.as_tensor(b2)),
    ).sum()
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)


def test_kl_floor_agrees_with_a_monte_carlo_estimate():
    at_init, best = kl_floor("normal", "studentt", 4.0)
    assert 0.044 < at_init < 0.048 and 0.024 < best < at_init  # the 0.046 and its best-scale 0.027
    q = torch.distributions.Normal(0.0, 1.0)
    p = torch.distributions.StudentT(4.0, 0.0, 1.0)
    torch.manual_seed(0)
    v = q.sample((400_000,))
    mc = float((q.log_prob(v) - p.log_prob(v)).mean())
    assert abs(mc - at_init) < 0.003
    assert kl_floor("laplace", "laplace") == (0.0, 0.0)
    lap = torch.distributions.kl_divergence(torch.distributions.Normal(0.0, 1.0), torch.distributions.Laplace(0.0, 1.0))
    assert kl_floor("normal", "laplace")[0] == pytest.approx(float(lap), abs=1e-4)


def test_a_normal_guide_under_a_studentt_prior_pays_the_floor(data):
    cfg, net, x, y = _setup(data, "studentt", guide="normal")
    terms = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), truncate=True)
    floor = kl_floor("normal", "studentt", cfg.priors.df)[0] * guided_dims(cfg.fit, data.task.seq_len, cfg.net.dim)
    assert floor > 30  # 25 positions x 16 channels x 2 transitions x 0.046
    np.testing.assert_allclose(terms.kl.numpy(), floor, rtol=0.15)  # one-sample Monte Carlo over 800 dimensions


def test_guide_family_field_defaults_and_old_configs():
    assert guide_family(FitConfig(), gram_pyro.PRIORS) == gram_pyro.PRIORS.family
    studentt = dataclasses.replace(gram_pyro.PRIORS, family="studentt")
    assert guide_family(FitConfig(), studentt) == "studentt"
    assert guide_family(FitConfig(guide_family="normal"), studentt) == "normal"
    with pytest.raises(ConfigError, match="guide_family"):
        FitConfig(guide_family="cauchy")
    old = to_dict(tiny_config())
    del old["fit"]["guide_family"]  # a run written before the field existed had a Normal guide
    assert gram_config_from_dict(json.loads(json.dumps(old))).fit.guide_family == "normal"


def _quiet_fit(cfg, data):
    from gram_ppl.inference.api import fit

    return fit(cfg, None, steps=1, data=data, progress=False)


def test_fit_warns_when_the_floor_exceeds_the_ceiling_and_not_otherwise(data):
    studentt = dataclasses.replace(gram_pyro.PRIORS, family="studentt")
    mismatched = dataclasses.replace(tiny_config(kl_cap_weight=10.0, guide_family="normal"), priors=studentt)
    with pytest.warns(UserWarning, match=r"KL floor of \d+\.\d nats per supervision step"):
        _quiet_fit(mismatched, data)
    matched = dataclasses.replace(mismatched, fit=dataclasses.replace(mismatched.fit, guide_family=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _quiet_fit(matched, data)
    assert math.isfinite(kl_floor("normal", "studentt")[1])
