"""The NumPyro backend against the Pyro one: site names, log densities of a fixed trajectory with
converted weights, training, compilation counts and sampling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers
from pyro import poutine
from tiny import tiny_config

from gram_ppl.data import build_dataset
from gram_ppl.networks import convert, flax_nets
from gram_ppl.networks.torch_nets import GramNet
from gram_ppl.tasks import get_task
from inference import svi_numpyro
from models import gram_numpyro, gram_pyro

CASES = [
    ("normal", "network", "gram"),
    ("studentt", "network", "gram"),
    ("laplace", "learned", "gram"),
    ("normal", "fixed", "noise_only"),
    ("normal", "network", "mean_only"),
    ("normal", "network", "deterministic"),
]


def pair(family="normal", scale_mode="network", variant="gram"):
    """A torch net with random guidance heads, and the same weights as flax parameters."""
    cfg = tiny_config(variant=variant)
    cfg = dataclasses.replace(cfg, priors=dataclasses.replace(gram_pyro.PRIORS, family=family, scale_mode=scale_mode))
    task = get_task("nqueens", 5)
    torch.manual_seed(0)
    tnet = GramNet(cfg, cfg.priors, task)
    with torch.no_grad():
        for head in (tnet.prior_head, tnet.posterior_head):
            head.net.w_out.weight.normal_(0, 0.05)
    params = convert.torch_to_flax({k: v.numpy() for k, v in tnet.state_dict().items()}, cfg.net.share_core)
    return cfg, task, tnet, flax_nets.make_net(cfg, cfg.priors, task), params


def test_the_priors_blocks_are_the_same():
    assert gram_numpyro.PRIORS == gram_pyro.PRIORS


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_log_density_of_a_fixed_trajectory_agrees(case):
    cfg, task, tnet, fnet, params = pair(*case)
    rng = np.random.default_rng(0)
    B, S, T = 3, cfg.fit.n_sup, cfg.fit.T
    x, y = rng.integers(1, 3, (B, task.x_len)), rng.integers(1, 3, (B, task.y_len))
    eps = 0.1 * rng.standard_normal((S, T, B, *tnet.z0.shape[1:])).astype(np.float32)
    fixed = case[2] not in ("deterministic", "mean_only")  # mean_only: ε is the location itself
    kw = dict(cfg=cfg, priors=cfg.priors, steps=range(S), truncate=False)
    data = {f"eps_{n}_{t}": torch.as_tensor(eps[n, t]) for n in range(S) for t in range(T)} if fixed else {}
    with torch.no_grad():
        tr = poutine.trace(poutine.condition(gram_pyro.model, data=data)).get_trace(
            torch.as_tensor(x), torch.as_tensor(y), net=tnet, **kw
        )
    model = handlers.condition(
        gram_numpyro.model, data={f"eps_{t}": jnp.asarray(eps[:, t]) for t in range(T)} if fixed else {}
    )
    model = handlers.seed(handlers.substitute(model, data={"gram$params": params}), jax.random.key(0))
    ntr = handlers.trace(model).get_trace(jnp.asarray(x), jnp.asarray(y), net=fnet, **kw)
    pyro_sites = {k for k, v in tr.nodes.items() if v["type"] == "sample" and k != "puzzles"}
    expected = {f"y_{n}" for n in range(S)}
    if case[2] != "deterministic":
        expected |= {f"eps_{n}_{t}" for n in range(S) for t in range(T)}
    assert pyro_sites == expected
    # NumPyro stacks each scanned site over the steps: eps_{n}_{t} is eps_{t}[n], y_{n} is y[n]
    for name in expected:
        site = tr.nodes[name]
        lp_t = site["fn"].log_prob(site["value"]).numpy()  # (B,)
        parts = name.split("_")
        nsite = ntr[f"eps_{parts[2]}"] if name.startswith("eps") else ntr["y"]
        n = int(parts[1])
        assert nsite["value"].shape[0] == S
        lp_n = np.asarray(nsite["fn"].log_prob(nsite["value"]))[n]  # (B,)
        np.testing.assert_allclose(lp_n, lp_t, rtol=1e-6, atol=1e-4, err_msg=name)


def test_site_names_map_between_backends():
    cfg, task, tnet, fnet, params = pair()
    x = jnp.ones((2, task.x_len), jnp.int32)
    model = handlers.seed(handlers.substitute(gram_numpyro.model, data={"gram$params": params}), jax.random.key(0))
    tr = handlers.trace(model).get_trace(x, None, net=fnet, cfg=cfg, steps=range(3))
    assert {k: tuple(v["value"].shape) for k, v in tr.items() if v["type"] == "sample"} == {
        "eps_0": (3, 2, *tnet.z0.shape[1:]),
        "eps_1": (3, 2, *tnet.z0.shape[1:]),
        "y": (3, 2, task.y_len),
    }


@pytest.fixture(scope="module")
def trained():
    cfg = dataclasses.replace(tiny_config(), priors=gram_numpyro.PRIORS)
    data = build_dataset(cfg.task)
    net = flax_nets.make_net(cfg, cfg.priors, data.task)
    trainer = svi_numpyro.Trainer(gram_numpyro, net, cfg, cfg.priors)
    rng = np.random.default_rng(0)
    losses, compiles = [], []
    for _ in range(25):
        idx = rng.choice(len(data.train), cfg.fit.batch_size, replace=False)
        losses.append(trainer.train_batch(data.train.x[idx], data.train.y[idx]).loss)
        compiles.append(trainer.compiles)
    return cfg, data, net, trainer, losses, compiles


def test_a_short_numpyro_fit_lowers_the_loss_without_recompiling(trained):
    *_, losses, compiles = trained
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert compiles[0] == compiles[-1] == 2  # one program per supervision step, compiled on batch 1


def test_numpyro_sampling_shapes_and_reproducibility(trained):
    cfg, data, net, trainer, *_ = trained
    a = svi_numpyro.sample(gram_numpyro, net, cfg, trainer.params, data.test.x[:3], num_samples=4, seed=1)
    b = svi_numpyro.sample(gram_numpyro, net, cfg, trainer.params, data.test.x[:3], num_samples=4, seed=1)
    assert a.shape == (4, 3, data.task.y_len) and np.array_equal(a, b)
