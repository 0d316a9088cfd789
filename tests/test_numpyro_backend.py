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
from pyro.poutine.messenger import Messenger
from tiny import tiny_config

from gram_ppl.data import build_dataset
from gram_ppl.inference import svi_numpyro
from gram_ppl.models import gram_numpyro, gram_pyro
from gram_ppl.networks import convert, flax_nets
from gram_ppl.networks.torch_nets import build_net
from gram_ppl.tasks import get_task

CASES = [  # family, σ, variant, rank of the prior's covariance (PriorConfig.rank)[, mixture components]
    ("normal", "network", "gram", 0),
    ("studentt", "network", "gram", 0),
    ("laplace", "learned", "gram", 0),
    ("normal", "fixed", "noise_only", 0),
    ("normal", "network", "mean_only", 0),
    ("normal", "network", "deterministic", 0),
    ("normal", "network", "gram", 2),
    ("normal", "network", "gram", 2, 3),
]


def case_id(case):
    mixture = f"-mix{case[4]}" if len(case) > 4 else ""
    return "-".join(map(str, case[:3])) + (f"-rank{case[3]}" if case[3] else "") + mixture


def pair(family="normal", scale_mode="network", variant="gram", rank=0, components=1, task_cfg=None):
    """A torch net with random guidance heads, and the same weights as flax parameters."""
    cfg = tiny_config(variant=variant)
    priors = dataclasses.replace(
        gram_pyro.PRIORS, family=family, scale_mode=scale_mode, rank=rank, components=components
    )
    cfg = dataclasses.replace(cfg, priors=priors)
    if task_cfg is not None:
        cfg = dataclasses.replace(cfg, task=task_cfg)
    task = get_task(cfg.task.name, cfg.task.size)
    torch.manual_seed(0)
    tnet = build_net(cfg, task)
    with torch.no_grad():
        for head in (tnet.prior_head, tnet.posterior_head):
            head.net.w_out.weight.normal_(0, 0.05)
    params = convert.torch_to_flax({k: v.numpy() for k, v in tnet.state_dict().items()}, cfg.net.share_core)
    return cfg, task, tnet, flax_nets.build_net(cfg, task), params


class Fixed(Messenger):
    """Pyro sample sites take the given values, still as latent (not observed) sites."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def _pyro_sample(self, msg):
        if msg["name"] in self.data:
            msg["value"], msg["done"] = self.data[msg["name"]], True


def test_both_backends_read_the_one_priors_block():
    from gram_ppl.models import priors

    assert gram_numpyro.PRIORS is gram_pyro.PRIORS is priors.PRIORS


@pytest.mark.parametrize("case", CASES, ids=case_id)
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
        lp_t = site["fn"].log_prob(site["value"]).detach().numpy()  # (B,)
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
    cfg = dataclasses.replace(tiny_config(), priors=gram_numpyro.PRIORS, backend="numpyro")
    data = build_dataset(cfg.task)
    net = flax_nets.build_net(cfg, data.task)
    trainer = svi_numpyro.Trainer(gram_numpyro, net, cfg)
    rng = np.random.default_rng(0)
    losses, compiles = [], []
    before = svi_numpyro.TRACES[0]
    for _ in range(25):
        idx = rng.choice(len(data.train), cfg.fit.batch_size, replace=False)
        losses.append(trainer.train_batch(data.train.x[idx], data.train.y[idx], data.train.num_solutions[idx]).loss)
        compiles.append(svi_numpyro.TRACES[0] - before)
    return cfg, data, net, trainer, losses, compiles


def test_a_short_numpyro_fit_lowers_the_loss_without_recompiling(trained):
    *_, losses, compiles = trained
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert compiles[0] == compiles[-1] <= 2  # one program per supervision step, compiled on batch 1 at most
    cfg, data, net, trainer, *_ = trained
    again = svi_numpyro.Trainer(gram_numpyro, net, cfg)  # e.g. a resumed run
    before = svi_numpyro.TRACES[0]
    B = cfg.fit.batch_size
    again.train_batch(data.train.x[:B], data.train.y[:B], data.train.num_solutions[:B])
    assert svi_numpyro.TRACES[0] == before  # the compiled programs are reused


def test_numpyro_sampling_shapes_and_reproducibility(trained):
    cfg, data, net, trainer, *_ = trained
    a = svi_numpyro.sample(gram_numpyro, trainer.sampling_net(), cfg, data.test.x[:3], num_samples=4, seed=1)
    b = svi_numpyro.sample(gram_numpyro, trainer.sampling_net(), cfg, data.test.x[:3], num_samples=4, seed=1)
    assert a.shape == (4, 3, data.task.y_len) and np.array_equal(a, b)


def test_sample_distributions_agree_between_backends_within_monte_carlo_error():
    """The same weights sample the same distribution of boards: per-cell queen frequencies of
    prior samples (σ fixed at 1 so boards vary) agree within Monte-Carlo error."""
    from gram_ppl.inference.svi_pyro import sample as torch_sample

    cfg, task, tnet, fnet, params = pair(scale_mode="fixed")
    cfg = dataclasses.replace(cfg, priors=dataclasses.replace(cfg.priors, scale=1.0))
    tnet, fnet = build_net(cfg, task), flax_nets.build_net(cfg, task)
    tnet.load_state_dict({k: torch.as_tensor(v) for k, v in convert.flax_to_torch(params, False).items()})
    x = np.ones((1, task.x_len), np.int64)
    N = 3000
    a = torch_sample(gram_pyro, tnet, cfg, x, num_samples=N, seed=0)[:, 0]
    b = svi_numpyro.sample(gram_numpyro, svi_numpyro.Bound(fnet, params), cfg, x, num_samples=N, seed=0)[:, 0]
    pa, pb = (a == 2).mean(0), (b == 2).mean(0)  # (L_y,) queen frequency per cell
    assert 0.02 < pa.mean() < 0.98  # the boards do vary: the comparison has something to compare
    se = np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / N) + 1e-3
    assert (np.abs(pa - pb) < 5 * se).all()
    assert abs(task.is_valid(x, a).mean() - task.is_valid(x, b).mean()) < 0.03


def test_cli_numpyro_fit_resume_evaluate_and_convert_both_ways(tmp_path, capsys):
    from gram_ppl.cli import main
    from gram_ppl.inference.run import load_run

    run, back, conv = tmp_path / "np", tmp_path / "back", tmp_path / "conv"
    # tests/tiny.py's config, as the `trained` fixture compiles it: this process reuses its programs
    tiny = ["--set", "net.dim=16", "--set", "net.heads=2", "--set", "net.layers=1", "--set", "fit.K=1",
            "--set", "fit.T=2", "--set", "fit.n_sup=2", "--set", "fit.batch_size=8", "--set", "fit.kl_cap_weight=0"]  # fmt: skip
    args = [
        "fit",
        "--task",
        "nqueens",
        "--size",
        "5",
        "--backend",
        "numpyro",
        "--steps",
        "3",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main([*args, *tiny]) == 0
    assert main(["fit", "--out", str(run), "--resume", "--steps", "5", "--quiet"]) == 0
    assert "5 batches" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--num-samples", "2", "--puzzles", "3"]) == 0
    assert json_of(capsys.readouterr().out)["num_samples"] == 2
    assert main(["convert", str(run), "--to", "pyro", "--out", str(back)]) == 0
    assert main(["convert", str(back), "--to", "numpyro", "--out", str(conv)]) == 0
    a, c = load_run(run), load_run(conv)
    assert c.config.backend == "numpyro" and load_run(back).config.backend == "pyro"
    for (pa, va), (pc, vc) in zip(leaves(a.net.params), leaves(c.net.params), strict=True):
        assert pa == pc and np.array_equal(np.asarray(va), np.asarray(vc))
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("".join(a.data.task.format_puzzle(x) + "\n" for x in a.data.test.x[:2]))
    out = tmp_path / "s.jsonl"  # the converted Pyro run samples with NumPyro
    assert main(["sample", str(conv), "--puzzles", str(puzzles), "--num-samples", "3", "--out", str(out)]) == 0
    rows = [json_of(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["samples"]) == 3 for r in rows)
    assert main(["convert", str(run), "--to", "numpyro", "--out", str(tmp_path / "same")]) == 2
    assert "already a numpyro run" in capsys.readouterr().err


def json_of(text):
    import json

    return json.loads(text)


def leaves(tree, prefix=()):
    for k in sorted(tree):
        v = tree[k]
        yield from (leaves(v, (*prefix, k)) if hasattr(v, "items") else [((*prefix, k), v)])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_training_loss_agrees_for_the_same_guide_noise(case):
    """trajectory_loss of both backends on one supervision step (the surrogate) and on the whole
    trajectory (the ELBO), with the guide's noise fixed to the same values."""
    from types import SimpleNamespace

    from gram_ppl.inference import svi_pyro

    cfg, task, tnet, fnet, params = pair(*case)
    rng = np.random.default_rng(1)
    B, T = 3, cfg.fit.T
    x, y = rng.integers(1, 3, (B, task.x_len)), rng.integers(1, 3, (B, task.y_len))
    for objective, steps in (("surrogate", range(1)), ("elbo", range(cfg.fit.n_sup))):
        c = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, objective=objective))
        eps = 0.1 * rng.standard_normal((len(steps), T, B, *tnet.z0.shape[1:])).astype(np.float32)
        if case[2] == "mean_only":  # the guide's point mass: its own location, left unconditioned
            data_t, data_n = {}, {}
        else:
            data_t = {f"eps_{n}_{t}": torch.as_tensor(eps[n, t]) for n in steps for t in range(T)}
            data_n = {f"eps_{t}": jnp.asarray(eps[:, t]) for t in range(T)}  # (S, B, L, D) each

        def guide_step(core, e_x, y, state, n, data_n=data_n, start=steps.start, **kw):  # step n's noise fixed
            data = {k: v[n - start] for k, v in data_n.items()}
            return handlers.substitute(gram_numpyro.guide_step, data=data)(core, e_x, y, state, n, **kw)

        mod_t = SimpleNamespace(model=gram_pyro.model, guide=Fixed(data_t)(gram_pyro.guide))
        mod_n = SimpleNamespace(model_step=gram_numpyro.model_step, guide_step=guide_step)
        with torch.no_grad():
            a = svi_pyro.trajectory_loss(
                mod_t, tnet, c, c.priors, torch.as_tensor(x), torch.as_tensor(y), None, steps, True
            )
        args = (params, jax.random.key(0), mod_n, fnet, c, c.priors, jnp.asarray(x), jnp.asarray(y), None, steps, True)
        if objective == "elbo" and case[0] != "normal":  # documented limit of one scan across guide_steps:
            other = dataclasses.replace(c, fit=dataclasses.replace(c.fit, guide_family="normal"))  # a guide
            with pytest.raises(ValueError, match="guide in the prior's family"):  # outside the prior's family
                svi_numpyro.trajectory_loss(*args[:4], other, *args[5:])
        b = svi_numpyro.trajectory_loss(*args)
        np.testing.assert_allclose(np.asarray(b.nll), a.nll.numpy(), rtol=1e-5, atol=1e-4, err_msg=objective)
        np.testing.assert_allclose(np.asarray(b.kl), a.kl.numpy(), rtol=1e-5, atol=1e-4, err_msg=objective)
        np.testing.assert_allclose(float(b.loss), a.loss.item(), rtol=1e-5, atol=1e-4, err_msg=objective)


@pytest.mark.parametrize("target,anchor", [("y", False), ("batch", False), ("nearest", False), ("train", False),
                                           ("train", True)])  # fmt: skip
def test_the_prior_path_term_agrees_between_backends(target, anchor):
    """With deterministic prior rollouts (mean_only: ε = μ) the NumPyro prior-path term equals the
    Pyro one, over two supervision steps from the carried state, for every target rule, with the
    target chosen at every step or anchored at the first."""
    from gram_ppl.inference.objective import prior_path_targets
    from gram_ppl.inference.svi_numpyro import PriorPath, prior_path_term
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    cfg, task, tnet, fnet, params = pair("normal", "network", "mean_only")
    fit = dataclasses.replace(cfg.fit, prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=4,
                              prior_path_target=target, prior_path_anchor=anchor)  # fmt: skip
    cfg = dataclasses.replace(cfg, fit=fit)
    data = build_dataset(dataclasses.replace(cfg.task, num_train=16, num_test=4))
    x, y = data.train.x[:6].astype(np.int64), data.train.y[:6].astype(np.int64)
    x[3] = x[1]  # two pairs of one input: the "batch" rule lets each take the other's target
    pool = (data.train.x, data.train.y)  # the "train" rule's candidates
    with torch.no_grad():
        trainer = Trainer(gram_pyro, tnet, cfg, task)
        trainer.target_pool = pool
        pp = _PriorPath(trainer, torch.as_tensor(x), torch.as_tensor(y))
        expected = [pp.step(range(n, n + 1)).item() for n in range(2)]
    targets, mask = prior_path_targets(cfg, x, y, lambda row: task.solutions(row, limit=64), pool)
    np.testing.assert_array_equal(targets, pp.targets.numpy())
    inputs = PriorPath(jnp.asarray(np.tile(x[:4], (3, 1))), jnp.asarray(targets), jnp.asarray(mask))
    carry, got = None, []
    for n in range(2):
        term, carry = prior_path_term(params, jax.random.key(0), gram_numpyro, fnet, cfg, cfg.priors, inputs, carry,
                                      range(n, n + 1))  # fmt: skip
        got.append(float(term))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert all(np.isfinite(got)) and (got[0] == 0 if anchor else got[0] > 0) and got[1] > 0


def test_the_repair_target_agrees_between_backends():
    """The "repair" rule (generation of 4x4 grids, deterministic rollouts): both backends repair
    the same drawn boards into the same valid targets at the first step (not scored) and give
    the same term at the second."""
    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.objective import prior_path_targets
    from gram_ppl.inference.svi_numpyro import PriorPath, prior_path_term, repaired
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    cfg, task, tnet, fnet, params = pair(
        "normal", "network", "mean_only", task_cfg=TaskConfig("sudoku", 4, mode="generate")
    )
    fit = dataclasses.replace(cfg.fit, prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=4,
                              prior_path_target="repair")  # fmt: skip
    cfg = dataclasses.replace(cfg, fit=fit)
    data = build_dataset(dataclasses.replace(cfg.task, num_train=16, num_test=4))
    x, y = data.train.x[:6].astype(np.int64), data.train.y[:6].astype(np.int64)
    with torch.no_grad():
        pp = _PriorPath(Trainer(gram_pyro, tnet, cfg, task), torch.as_tensor(x), torch.as_tensor(y))
        expected = [pp.step(range(n, n + 1)).item() for n in range(2)]
    boards = pp.targets.numpy()  # (K*P, L_y): the repaired boards
    assert boards.shape == (12, task.y_len) and task.is_valid(np.tile(x[:4], (3, 1)), boards).all()
    targets, mask = prior_path_targets(cfg, x, y)
    inputs = PriorPath(jnp.asarray(np.tile(x[:4], (3, 1))), jnp.asarray(targets), jnp.asarray(mask))
    term0, carry = prior_path_term(params, jax.random.key(0), gram_numpyro, fnet, cfg, cfg.priors, inputs, None,
                                   range(1))  # fmt: skip
    inputs, carry = repaired(task, inputs, carry)
    np.testing.assert_array_equal(np.asarray(inputs.targets), boards)
    term1, _ = prior_path_term(
        params, jax.random.key(0), gram_numpyro, fnet, cfg, cfg.priors, inputs, carry, range(1, 2)
    )
    np.testing.assert_allclose([float(term0), float(term1)], expected, rtol=1e-5, atol=1e-4)
    assert expected[0] == 0 and expected[1] > 0


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_fit_with_the_repair_target(tmp_path, backend):
    """Generation trained with the "repair" rule: finite, the term reported, in both backends."""
    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.run import fit

    cfg = tiny_config(prior_path_weight=1.0, prior_path_samples=2, prior_path_puzzles=4)
    fit_cfg = dataclasses.replace(cfg.fit, prior_path_target="repair")
    cfg = dataclasses.replace(
        cfg, task=TaskConfig(name="sudoku", size=4, mode="generate"), fit=fit_cfg, backend=backend
    )
    result = fit(cfg, tmp_path / "run", steps=2, progress=False, eval_puzzles=4)
    rows = [r for r in result.history if "loss" in r]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert all(r["terms"]["prior_path"] > 0 for r in rows)


def test_a_numpyro_fit_with_the_prior_path_term(tmp_path):
    """The term in NumPyro training: finite, reported among the loss terms, for generation's "batch" rule."""
    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.run import fit

    cfg = tiny_config(prior_path_weight=1.0, prior_path_samples=2, prior_path_puzzles=4, prior_path_target="batch")
    cfg = dataclasses.replace(cfg, task=TaskConfig(name="sudoku", size=4, mode="generate"), backend="numpyro")
    result = fit(cfg, tmp_path / "run", steps=2, progress=False, eval_puzzles=4)
    rows = [r for r in result.history if "loss" in r]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert all(r["terms"]["prior_path"] > 0 for r in rows)
