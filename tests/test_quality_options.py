"""The quality mechanisms of issue 15 as options: the KL ceiling, sampling temperature and the
CPU-time budget. Each changes what it should on a tiny fixture, in both backends where it applies."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny import tiny_config

from gram_ppl import build_dataset
from gram_ppl.config import ConfigError, FitConfig, NetConfig, TaskConfig
from gram_ppl.inference.objective import kl_ceiling
from gram_ppl.models import gram_pyro
from gram_ppl.networks.torch_nets import build_net


def _batch(cfg, n=8):
    data = build_dataset(cfg.task)
    x = torch.as_tensor(data.train.x[:n].astype(np.int64))
    y = torch.as_tensor(data.train.y[:n].astype(np.int64))
    return data, x, y, data.train.num_solutions[:n]


def test_kl_ceiling_values_and_bad_input():
    assert np.allclose(kl_ceiling(FitConfig(kl_cap=2.0, kl_cap_per_example=False), None, 3), 2.0)
    fit = FitConfig(kl_cap=0.5, kl_cap_per_example=True)
    assert np.allclose(kl_ceiling(fit, np.array([1, 2, 8]), 3), np.log([1, 2, 8]) + 0.5)
    with pytest.raises(ValueError, match="number of solutions"):
        kl_ceiling(fit, None, 3)
    with pytest.raises(ValueError, match="counts >= 1"):
        kl_ceiling(fit, np.array([1, 0, 2]), 3)
    assert np.isinf(kl_ceiling(fit, np.array([1, -1, 2]), 3)[1])  # a count not known: no ceiling
    assert np.allclose(kl_ceiling(fit, np.array([1, -1, 2]), 3, 49.9), np.log([1, 1, 2]) + [0.0, 49.9, 0.0] + 0.5)


def test_nine_by_nine_generation_has_a_kl_ceiling_from_the_grid_count():
    """9x9 grids (6.67e21) do not fit the int64 counts, which hold -1; the task knows the count, so
    the ceiling is ln(6.67e21) + kl_cap = 51.3 nats rather than none; other -1 counts (digits:
    no count) keep no ceiling."""
    import math

    from gram_ppl.inference.objective import log_count_unknown
    from gram_ppl.tasks import get_task

    nine = get_task("sudoku", 9)
    assert (
        nine.log_count_unknown
        == pytest.approx(math.log(6_670_903_752_021_072_936_960))
        == pytest.approx(50.25, abs=0.01)
    )
    assert math.isinf(get_task("sudoku", 6).log_count_unknown) and math.isinf(get_task("digits", 8).log_count_unknown)
    assert math.isinf(log_count_unknown(None))
    cap = kl_ceiling(FitConfig(), np.array([-1]), 1, log_count_unknown(nine))
    assert cap[0] == pytest.approx(51.25, abs=0.01)
    for bad in ({"kl_cap_weight": -1.0}, {"kl_cap": float("nan")}, {"kl_cap_weight": float("inf")}):
        with pytest.raises(ConfigError, match="kl_cap"):
            FitConfig(**bad)
    assert FitConfig().kl_cap_weight == 10.0 and FitConfig().kl_cap_per_example  # the default recipe


def test_a_spread_kl_ceiling_shares_ln_n_over_the_guided_steps():
    """kl_cap_spread: C_i = ln(n_i) / S + kl_cap with S the steps the guide acts in (guide_steps,
    or N_sup where it is 0); with one guided step it is the plain ceiling."""
    n = np.array([1, 6, 288, -1])
    for steps, n_sup, share in ((0, 4, 4), (2, 4, 2), (0, 16, 16), (1, 4, 1)):
        fit = FitConfig(kl_cap=0.5, kl_cap_spread=True, guide_steps=steps, n_sup=n_sup)
        got = kl_ceiling(fit, n, 4)
        assert np.allclose(got[:3], np.log([1, 6, 288]) / share + 0.5) and np.isinf(got[3])
    plain = FitConfig(kl_cap=0.5, guide_steps=0, n_sup=4)
    assert np.allclose(kl_ceiling(plain, n[:3], 3), np.log([1, 6, 288]) + 0.5)  # off by default
    with pytest.raises(ConfigError, match="kl_cap_spread"):
        FitConfig(kl_cap_spread=1)


def test_kl_ceiling_adds_lambda_times_the_excess_to_the_loss():
    from gram_ppl.inference.svi_pyro import trajectory_loss

    cfg = dataclasses.replace(tiny_config(guide_steps=0), priors=gram_pyro.PRIORS)
    data, x, y, _ = _batch(cfg)
    net = build_net(cfg, data.task)
    with torch.no_grad():
        for p in net.posterior_head.parameters():  # a guide far from the prior: KL well above 0
            p.normal_(0, 0.3)
    capped = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, kl_cap_weight=3.0))
    for c in (0.0, 1e9):  # C = 0: the whole KL is excess; C huge: no excess
        torch.manual_seed(0)
        a = trajectory_loss(gram_pyro, net, cfg, cfg.priors, x, y, None, range(2), False)
        torch.manual_seed(0)
        b = trajectory_loss(gram_pyro, net, capped, cfg.priors, x, y, None, range(2), False, torch.full((8,), c))
        expected = 3.0 * a.kl.sum() if c == 0 else torch.tensor(0.0)
        assert a.kl.sum() > 1.0
        assert torch.allclose(b.loss - a.loss, expected, rtol=1e-4, atol=1e-5)


def test_kl_ceiling_lowers_the_kl_it_caps():
    """Same seeds and data; the capped fit ends with a first-step KL below the uncapped one and
    near its ceiling C = 0.5 nats."""
    from gram_ppl.inference.svi_pyro import Trainer

    kls = {}
    for weight in (0.0, 20.0):
        cfg = dataclasses.replace(
            tiny_config(guide_steps=1, kl_cap_weight=weight, kl_cap=0.5, lr=3e-3), priors=gram_pyro.PRIORS
        )
        data, x, y, n = _batch(cfg)
        torch.manual_seed(0)
        trainer = Trainer(gram_pyro, build_net(cfg, data.task), cfg)
        for _ in range(30):
            info = trainer.train_batch(x, y, n)
        kls[weight] = info.kl[0]
    assert kls[0.0] > 1.0, kls  # without a ceiling the guide carries y: above C = 0.5
    assert kls[20.0] < 0.6 * kls[0.0], kls


def test_per_example_ceiling_needs_the_number_of_solutions():
    from gram_ppl.inference.svi_pyro import Trainer

    cfg = dataclasses.replace(tiny_config(kl_cap_weight=1.0, kl_cap_per_example=True), priors=gram_pyro.PRIORS)
    assert FitConfig(variant="deterministic").kl_cap_weight  # no noise, nothing to cap: KL 0 is below it
    data, x, y, n = _batch(cfg)
    trainer = Trainer(gram_pyro, build_net(cfg, data.task), cfg)
    with pytest.raises(ValueError, match="number of solutions"):
        trainer.train_batch(x, y)
    assert np.isfinite(trainer.train_batch(x, y, n).loss)


def test_kl_ceiling_in_numpyro_adds_the_same_term():
    import jax
    import jax.numpy as jnp
    from test_numpyro_backend import pair

    from gram_ppl.inference import svi_numpyro
    from gram_ppl.models import gram_numpyro

    cfg, task, tnet, fnet, params = pair()
    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, guide_steps=0))
    capped = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, kl_cap_weight=5.0))
    rng = np.random.default_rng(3)
    x, y = rng.integers(1, 3, (3, task.x_len)), rng.integers(1, 3, (3, task.y_len))
    args = (params, jax.random.key(0), gram_numpyro, fnet)
    rest = (jnp.asarray(x), jnp.asarray(y), None, range(2), True)
    a = svi_numpyro.trajectory_loss(*args, cfg, cfg.priors, *rest)
    assert float(a.kl.sum()) > 0.1
    for c in (0.0, 1e9):
        b = svi_numpyro.trajectory_loss(*args, capped, cfg.priors, *rest, jnp.full(3, c))
        expected = 5.0 * float(a.kl.sum()) if c == 0 else 0.0
        np.testing.assert_allclose(float(b.loss - a.loss), expected, rtol=1e-4, atol=1e-5)


def _untrained(backend):
    """A tiny config whose untrained prior is wide (σ 0.9), 3 held-out puzzles, and the backend's
    untrained networks and model module."""
    from gram_ppl.inference import svi_numpyro
    from gram_ppl.models import gram_numpyro
    from gram_ppl.networks import flax_nets

    cfg = dataclasses.replace(tiny_config(), priors=dataclasses.replace(gram_pyro.PRIORS, scale=0.9, max_scale=1.0))
    cfg = dataclasses.replace(cfg, backend=backend)
    data = build_dataset(cfg.task)
    x = data.test.x[:3]
    if backend == "pyro":
        torch.manual_seed(0)
        net, mod = build_net(cfg, data.task), gram_pyro
    else:
        fnet = flax_nets.build_net(cfg, data.task)
        net, mod = svi_numpyro.Bound(fnet, flax_nets.init_params(fnet, 0)), gram_numpyro
    return cfg, x, net, mod


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_temperature_zero_gives_identical_samples_and_one_is_the_model(backend):
    from gram_ppl.inference import svi_numpyro, svi_pyro
    from gram_ppl.inference.sampling import rollout

    cfg, x, net, mod = _untrained(backend)

    def draw(tau, seed=0):
        return rollout(mod, net, cfg, x, 32, 2, temperature=tau, seed=seed).per_step  # (S, N, B, L_y)

    cold = draw(0.0)
    assert (cold == cold[:, :1]).all()  # τ = 0: every trajectory of a puzzle is the prior mean's
    warm = draw(1.0)
    assert not (warm == warm[:, :1]).all()  # the untrained prior (σ 0.9) makes different boards

    def distinct(b):  # distinct final boards per puzzle, averaged
        return np.mean([len({r.tobytes() for r in b[-1, :, i]}) for i in range(b.shape[2])])

    assert distinct(draw(0.02)) < distinct(draw(2.0))  # temperature sets the spread
    default = rollout(mod, net, cfg, x, 32, 2).per_step
    np.testing.assert_array_equal(warm, default)  # τ = 1 is the model itself
    # fit.sample_temperature is what every sampler draws at when none is asked for: the rollouts
    # and the one-shot sampler (which fit.keep_best's evaluations use)
    hot = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, sample_temperature=2.0))
    np.testing.assert_array_equal(rollout(mod, net, hot, x, 32, 2).per_step, draw(2.0))
    one_shot = (svi_pyro if backend == "pyro" else svi_numpyro).sample
    at_two = one_shot(mod, net, cfg, x, num_samples=8, temperature=2.0)
    np.testing.assert_array_equal(one_shot(mod, net, hot, x, num_samples=8), at_two)
    assert not np.array_equal(one_shot(mod, net, cfg, x, num_samples=8), at_two)
    a = (svi_pyro if backend == "pyro" else svi_numpyro).sample(mod, net, cfg, x, num_samples=8, temperature=0.0)
    assert (a == a[:1]).all()  # the same handler in the one-shot sampler
    with pytest.raises(ValueError, match="temperature"):
        draw(-1.0)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_temperature_schedule_sets_each_steps_tau(backend):
    """τ moving linearly from START at the first step to END at the last (a pair, or
    fit.sample_temperature_end): each step draws at its own τ, in order; the run's schedule is
    what every sampler uses when none is asked for, the one-shot sampler included."""
    from gram_ppl.inference import svi_numpyro, svi_pyro
    from gram_ppl.inference.sampling import rollout

    cfg, x, net, mod = _untrained(backend)

    def one_board(per_step):  # (S,) whether each step's boards are the same for every trajectory
        return (per_step == per_step[:, :1]).all(axis=(1, 2, 3))

    warming = rollout(mod, net, cfg, x, 32, 3, temperature=(0.0, 2.0)).per_step  # τ 0, 1, 2
    assert one_board(warming).tolist() == [True, False, False]  # step 1 at the prior mean, then spread
    assert not one_board(rollout(mod, net, cfg, x, 32, 3, temperature=(2.0, 0.0)).per_step)[0]
    flat = rollout(mod, net, cfg, x, 32, 3, temperature=(1.0, 1.0)).per_step
    np.testing.assert_array_equal(flat, rollout(mod, net, cfg, x, 32, 3).per_step)  # a flat pair: the model
    run = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, sample_temperature=0.0, sample_temperature_end=2.0))
    np.testing.assert_array_equal(rollout(mod, net, run, x, 32, 3).per_step, warming)  # the run's schedule
    one_shot = (svi_pyro if backend == "pyro" else svi_numpyro).sample(mod, net, run, x, num_samples=8, depth=3)
    np.testing.assert_array_equal(one_shot, rollout(mod, net, run, x, 8, 3).boards)
    backend_steps = (svi_pyro if backend == "pyro" else svi_numpyro).prior_steps
    with pytest.raises(ValueError, match="schedule"):  # the run's schedule needs a depth: not silently flat
        next(backend_steps(mod, net, run, x, 2))
    with pytest.raises(ValueError, match="temperature"):
        rollout(mod, net, cfg, x, 2, 3, temperature=(1.0, -1.0))
    with pytest.raises(ValueError, match="pair"):
        rollout(mod, net, cfg, x, 2, 3, temperature=(1.0, 0.5, 0.0))


def test_temperature_schedule_values_and_the_config_field():
    from gram_ppl.config import GramConfig, describe_temperature, gram_config_from_dict, temperature_schedule, to_dict

    cfg = GramConfig(task=TaskConfig(name="nqueens", size=8))
    assert temperature_schedule(cfg, 3) == (1.0, 1.0, 1.0)
    assert temperature_schedule(cfg, 5, (3.0, 1.0)) == (3.0, 2.5, 2.0, 1.5, 1.0)
    assert temperature_schedule(cfg, 1, (3.0, 1.0)) == (3.0,)  # one step: the start
    assert temperature_schedule(cfg, 2, 0.5) == (0.5, 0.5)  # one τ asked: constant, whatever the run's
    run = dataclasses.replace(cfg, fit=FitConfig(sample_temperature=3.0, sample_temperature_end=0.0))
    assert temperature_schedule(run, 4) == (3.0, 2.0, 1.0, 0.0)
    assert temperature_schedule(run, 2, 0.5) == (0.5, 0.5)
    cooling = dataclasses.replace(cfg, fit=FitConfig(sample_temperature_end=0.0))  # from the run's τ, 1
    assert temperature_schedule(cooling, 3) == (1.0, 0.5, 0.0)
    assert describe_temperature(run) == "3 -> 0" and describe_temperature(cfg) == "1"
    for bad in (-0.5, float("nan"), True, "0"):
        with pytest.raises(ConfigError, match="sample_temperature_end"):
            FitConfig(sample_temperature_end=bad)
    old = to_dict(run)
    assert gram_config_from_dict(old).fit.sample_temperature_end == 0.0  # config.json keeps it
    del old["fit"]["sample_temperature_end"]  # a config.json from before the field: constant τ
    assert gram_config_from_dict(old).fit.sample_temperature_end is None


def _gram(*args):
    return subprocess.run([sys.executable, "-m", "gram_ppl", *args], capture_output=True, text=True)


def test_cpu_minutes_budget_and_bad_budgets(tmp_path):
    from gram_ppl.inference.run import RunError, fit

    cfg = tiny_config()
    result = fit(cfg, tmp_path / "run", cpu_minutes=0.02, progress=False, eval_puzzles=4)  # 1.2 CPU seconds
    batches = [r for r in result.history if "loss" in r]
    assert batches and all("cpu_seconds" in r for r in result.history)
    # records are rounded to 3 decimals: a batch that ended at 1.1996 s is recorded as 1.2, hence <=
    assert batches[-1]["cpu_seconds"] >= 1.2 and batches[-2]["cpu_seconds"] <= 1.2 if len(batches) > 1 else True
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(RunError, match="cpu_minutes"):
            fit(cfg, None, cpu_minutes=bad, progress=False)
    for flag in ("--minutes", "--cpu-minutes"):
        r = _gram("fit", "--task", "nqueens", "--size", "5", flag, "nan", "--out", str(tmp_path / "bad"))
        assert r.returncode == 2 and "finite number" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_temperature_and_evaluate_out(tmp_path):
    run = tmp_path / "run"
    r = _gram("fit", "--task", "nqueens", "--size", "5", "--steps", "2", "--quiet", "--out", str(run),
              "--set", "fit.batch_size=8", "--set", "net.dim=16", "--set", "net.heads=2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "m.json"
    r = _gram("evaluate", str(run), "--num-samples", "4", "--temperature", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert m["temperature"] == 0.0 and m["distinct_valid"] <= 1.0  # one board per puzzle at τ = 0
    assert set(m["by_num_solutions"]) <= {"1", "2-3", "4+"}
    r = _gram("evaluate", str(run), "--temperature", "-0.5")
    assert r.returncode == 2 and "finite number >= 0" in r.stderr
    r = _gram("evaluate", str(run), "--num-samples", "4", "--depth", "3", "--temperature", "2:0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert (m["temperature"], m["temperature_end"]) == (2.0, 0.0)  # the schedule's ends are reported
    for bad in ("2:x", "2:-1", ":1"):
        r = _gram("evaluate", str(run), "--temperature", bad)
        assert r.returncode == 2 and "START:END" in r.stderr


def test_set_priors_applies_on_top_of_the_priors_block(tmp_path):
    from gram_ppl.config import GramConfig, PriorConfig
    from gram_ppl.models.priors import PRIORS
    from gram_ppl.overrides import apply_overrides

    block = PriorConfig(family="studentt", scale=0.3)
    cfg = apply_overrides(GramConfig(), ["priors.family=laplace"], block)
    assert cfg.priors == PriorConfig(family="laplace", scale=0.3)  # not PriorConfig()'s scale 0.1
    with pytest.raises(ConfigError, match="has no field 'familly'; known: components, df, family"):
        apply_overrides(GramConfig(), ["priors.familly=laplace"], block)
    run = tmp_path / "run"
    r = _gram("fit", "--task", "nqueens", "--size", "5", "--steps", "1", "--quiet", "--out", str(run),
              "--set", "priors.max_scale=0.8", "--set", "fit.batch_size=8", "--set", "net.dim=16", "--set", "net.heads=2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    recorded = json.loads((run / "config.json").read_text())["priors"]
    assert recorded == {**dataclasses.asdict(PRIORS), "max_scale": 0.8}
    assert f"priors: {PRIORS.family}, σ {PRIORS.scale_mode}" in r.stderr  # the priors in force are stated


def test_prior_path_term_is_an_importance_weighted_bound_whose_gradient_reaches_the_prior_heads():
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    cfg = dataclasses.replace(tiny_config(prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=4),
                              priors=gram_pyro.PRIORS)  # fmt: skip
    data, x, y, n = _batch(cfg)
    torch.manual_seed(0)
    trainer = Trainer(gram_pyro, build_net(cfg, data.task), cfg)
    with torch.no_grad():
        for p in trainer.net.prior_head.parameters():  # zero-initialised heads would pass no gradient on
            p.normal_(0, 0.1)
    pp = _PriorPath(trainer, x, y)
    assert pp.x.shape == (12, x.shape[1])
    term = pp.step(range(1))
    assert term.ndim == 0 and torch.isfinite(term) and term > 0  # −log of a probability of a board
    term.backward()
    grads = [p.grad for p in trainer.net.prior_head.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # the prior's μ/σ heads learn from it
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in trainer.net.posterior_head.parameters())
    assert pp.carry is not None and not pp.carry[0].requires_grad  # advanced, detached, for the next step
    assert np.isfinite(trainer.train_batch(x, y, n).loss)  # and inside a training batch
    with pytest.raises(ConfigError, match="surrogate objective"):
        FitConfig(prior_path_weight=1.0, objective="elbo")
    dataclasses.replace(tiny_config(prior_path_weight=1.0), backend="numpyro")  # both backends have it


def test_nearest_target_scores_each_rollout_against_its_best_exact_solution():
    """prior_path_target="nearest": each rollout's term is the best log-likelihood over the
    input's exact solutions, so it is never below the term for the pair's own y."""
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    cfg = dataclasses.replace(
        tiny_config(prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=8, prior_path_target="nearest"),
        priors=gram_pyro.PRIORS,
    )
    data, x, y, n = _batch(cfg)
    assert (n > 1).any()  # the fixture has inputs with several completions
    torch.manual_seed(0)
    trainer = Trainer(gram_pyro, build_net(cfg, data.task), cfg, data.task)
    with torch.no_grad():
        for p in trainer.net.decoder.parameters():  # an untrained decoder is near uniform: give it a view
            p.normal_(0, 1.0)
    pp = _PriorPath(trainer, x, y)
    assert pp.targets.shape[0] == int(n[:8].sum()) and (pp.mask.sum(1).numpy() == n[:8]).all()
    for p_ in range(8):  # every candidate that counts for an input is an exact solution of it
        assert data.task.is_valid(x[p_].numpy()[None], pp.targets[pp.mask[p_]].numpy()).all()
    torch.manual_seed(1)
    nearest = pp.step(range(1))
    torch.manual_seed(1)
    plain = _PriorPath(Trainer(gram_pyro, trainer.net, dataclasses.replace(cfg, fit=dataclasses.replace(
        cfg.fit, prior_path_target="y"))), x, y).step(range(1))  # fmt: skip
    assert torch.isfinite(nearest) and nearest < plain  # the best solution scores above the pair's y somewhere
    nearest.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.net.decoder.parameters())
    with pytest.raises(ValueError, match="needs the task"):
        _PriorPath(Trainer(gram_pyro, trainer.net, cfg), x, y)
    with pytest.raises(ConfigError, match="prior_path_target"):
        FitConfig(prior_path_target="closest")


def test_batch_target_takes_the_nearest_target_of_the_same_input():
    """prior_path_target="batch": for generation (every input blank) each rollout is scored against
    the most likely grid of the batch, never worse than its own pair's; where every input of the
    batch differs, it is exactly the "y" term."""
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    def term(cfg, target, x, y, seed=1):
        fit = dataclasses.replace(cfg.fit, prior_path_target=target)
        torch.manual_seed(seed)
        return _PriorPath(Trainer(gram_pyro, net, dataclasses.replace(cfg, fit=fit)), x, y).step(range(1))

    # the target chosen at every step (no anchor), so the first step is scored
    base = tiny_config(
        prior_path_weight=1.0,
        prior_path_samples=3,
        prior_path_puzzles=8,
        prior_path_target="batch",
        prior_path_anchor=False,
    )
    gen = dataclasses.replace(base, task=TaskConfig(name="sudoku", size=4, mode="generate"), priors=gram_pyro.PRIORS)
    data, x, y, _ = _batch(gen)
    assert (x == x[0]).all() and len({r.numpy().tobytes() for r in y}) == 8  # blank inputs, 8 grids
    torch.manual_seed(0)
    net = build_net(gen, data.task)
    with torch.no_grad():
        for p in net.decoder.parameters():  # an untrained decoder is near uniform: give it a view
            p.normal_(0, 1.0)
    pp = _PriorPath(Trainer(gram_pyro, net, gen), x, y)
    assert pp.mask.all() and pp.targets.shape == (8, 16)
    nearest, own = term(gen, "batch", x, y), term(gen, "y", x, y)
    assert torch.isfinite(nearest) and nearest < own
    nearest.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.prior_head.parameters())
    solve = dataclasses.replace(base, priors=gram_pyro.PRIORS)
    data, x, y, _ = _batch(solve, n=32)
    net = build_net(solve, data.task)
    pp = _PriorPath(Trainer(gram_pyro, net, solve), x, y)
    pairs = [(i, j) for i in range(8) for j in range(32) if i != j and torch.equal(x[i], x[j])]
    assert pairs and all(pp.mask[i, j] for i, j in pairs)  # an input's other targets count
    assert int(pp.mask.sum()) == 8 + len(pairs)  # and no other input's
    first = sorted({r.numpy().tobytes(): i for i, r in reversed(list(enumerate(x)))}.values())[:8]
    x, y = x[first], y[first]  # 8 distinct inputs: only the pair's own target counts
    torch.testing.assert_close(term(solve, "batch", x, y), term(solve, "y", x, y))


def _generation_net(**fit):
    """A 4x4 generation config with the prior-path term, its first 8 training pairs (blank inputs)
    and a fresh network whose decoder is given a view (an untrained one is near uniform)."""
    base = tiny_config(
        prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=8, **{"prior_path_anchor": False, **fit}
    )
    gen = dataclasses.replace(base, task=TaskConfig(name="sudoku", size=4, mode="generate"), priors=gram_pyro.PRIORS)
    data, x, y, _ = _batch(gen)
    torch.manual_seed(0)
    net = build_net(gen, data.task)
    with torch.no_grad():
        for p in net.decoder.parameters():
            p.normal_(0, 1.0)
    return gen, data, x, y, net


def test_train_target_takes_the_nearest_grid_of_the_whole_training_split():
    """prior_path_target="train": each rollout is scored against the most likely target of the
    whole training split for the same input (generation: every training grid), so never worse
    than under "batch"; a rollout whose board is a training grid is scored against that grid."""
    from gram_ppl.inference.objective import prior_path_targets
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    gen, data, x, y, net = _generation_net()
    base = tiny_config(prior_path_weight=1.0, prior_path_samples=3, prior_path_puzzles=8)

    def term(target, pool=None):
        trainer = Trainer(
            gram_pyro, net, dataclasses.replace(gen, fit=dataclasses.replace(gen.fit, prior_path_target=target))
        )
        trainer.target_pool = pool
        torch.manual_seed(1)
        return _PriorPath(trainer, x, y).step(range(1))

    pool = (data.train.x, data.train.y)  # 230 grids
    assert torch.isfinite(term("train", pool)) and term("train", pool) <= term("batch") <= term("y")
    with pytest.raises(ValueError, match="needs the training split"):
        term("train")
    train = dataclasses.replace(gen, fit=dataclasses.replace(gen.fit, prior_path_target="train"))
    targets, mask = prior_path_targets(train, x.numpy(), y.numpy(), pool=pool)
    assert targets.shape == (8 + 230, 16) and mask[:, 8:].all()  # the pair's own grid, then every training grid
    solve = dataclasses.replace(base, fit=dataclasses.replace(base.fit, prior_path_target="train"))
    sdata, sx, sy, _ = _batch(solve, n=32)
    targets, mask = prior_path_targets(solve, sx.numpy(), sy.numpy(), pool=(sdata.train.x, sdata.train.y))
    for p_ in range(8):  # puzzles: the training targets of the same input only, each a solution of it
        assert mask[p_, p_] and sdata.task.is_valid(sx[p_].numpy()[None], targets[mask[p_]]).all()
        assert mask[p_, 8:].sum() == (sdata.train.x == sx[p_].numpy()).all(-1).sum()


def test_the_training_splits_one_hot_rows_are_built_once_per_pool_and_vocabulary():
    """Trainer.pool_onehot: the "train" rule's pool rows are cached across batches (the same
    tensor while the pool and vocabulary stay), rebuilt for a new pool, and give the term the value
    the uncached candidates give."""
    from gram_ppl.inference.objective import candidate_onehot, prior_path_targets
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    gen, data, x, y, net = _generation_net()
    cfg = dataclasses.replace(gen, fit=dataclasses.replace(gen.fit, prior_path_target="train", prior_path_anchor=False))
    trainer = Trainer(gram_pyro, net, cfg)
    trainer.target_pool = pool = (data.train.x, data.train.y)
    V = int(data.train.y.max()) + 1
    rows = trainer.pool_onehot(V)  # (230, 16 * V)
    assert rows is trainer.pool_onehot(V) and torch.equal(rows, torch.as_tensor(candidate_onehot(data.train.y, V)))
    assert trainer.pool_onehot(V + 1).shape == (230, 16 * (V + 1))
    trainer.target_pool = (data.train.x[:10], data.train.y[:10])
    assert trainer.pool_onehot(V).shape == (10, 16 * V)
    trainer.target_pool = pool
    torch.manual_seed(1)
    cached = _PriorPath(trainer, x, y)
    got = cached.step(range(1))
    targets, _ = prior_path_targets(cfg, x.numpy(), y.numpy(), pool=pool)
    V = cached.onehot[0].shape[1] // targets.shape[1]  # the decoder's vocabulary
    assert len(cached.onehot) == 2 and cached.onehot[1] is trainer.pool_onehot(V)
    assert torch.equal(torch.cat(cached.onehot), torch.as_tensor(candidate_onehot(targets, V)))
    torch.manual_seed(1)
    uncached = _PriorPath(trainer, x, y)
    uncached.onehot = [torch.as_tensor(candidate_onehot(targets, V))]  # one block, built from scratch
    assert got > 0 and torch.allclose(got, uncached.step(range(1)))  # a score (not anchored: the first step counts)


def test_an_anchored_target_is_chosen_at_the_first_step_and_kept():
    """prior_path_anchor: the first step is not scored and fixes each rollout's candidate; a later
    step is scored against it, so never better than re-choosing the nearest there."""
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath

    gen, data, x, y, net = _generation_net(prior_path_target="batch")
    terms = {}
    for anchor in (True, False):
        cfg = dataclasses.replace(gen, fit=dataclasses.replace(gen.fit, prior_path_anchor=anchor))
        pp = _PriorPath(Trainer(gram_pyro, net, cfg), x, y)
        torch.manual_seed(1)
        terms[anchor] = [pp.step(range(n, n + 1)) for n in range(2)]
        if anchor:
            assert pp.anchor.shape == (3, 8) and terms[True][0].item() == 0  # chosen, not scored
    assert torch.isfinite(terms[True][1]) and terms[True][1] >= terms[False][1]
    terms[True][1].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    with pytest.raises(ConfigError, match="prior_path_anchor"):
        FitConfig(prior_path_anchor=1)


def test_global_channel_puts_noise_on_the_register_tokens_only():
    """NetConfig.noise_tokens = P: the noise sites are (B, P, D), the other positions of h are the
    deterministic update, and the guide reads y through the pooled projection."""
    from pyro import poutine

    from gram_ppl.config import NetConfig

    cfg = dataclasses.replace(tiny_config(), priors=gram_pyro.PRIORS,
                              net=NetConfig(dim=16, heads=2, layers=1, prefix_tokens=3, noise_tokens=2,
                                            posterior_input="pooled"))  # fmt: skip
    data, x, y, _ = _batch(cfg)
    net = build_net(cfg, data.task)
    tr = poutine.trace(gram_pyro.guide).get_trace(x, y, net=net, cfg=cfg, priors=cfg.priors)
    assert tr.nodes["eps_0_0"]["value"].shape == (8, 2, 16)
    model_tr = poutine.trace(poutine.replay(gram_pyro.model, trace=tr)).get_trace(
        x, y, net=net, cfg=cfg, priors=cfg.priors
    )
    u = torch.randn(8, 3 + data.task.seq_len, 16)
    eps = torch.randn(8, 2, 16)
    h = net.add_noise(u, eps)
    assert torch.equal(h[:, 2:], u[:, 2:]) and torch.equal(h[:, :2], u[:, :2] + eps)
    assert np.isfinite(model_tr.log_prob_sum().item())
    assert set(y.unique().tolist()) == {1, 2}  # empty, queen
    y2 = 3 - y  # every cell flipped: the guide's input for every register changes
    with torch.no_grad():
        net.posterior_head.net.w_out.weight.normal_(0, 0.1)
    loc1, _ = net.posterior(u, y)
    loc2, _ = net.posterior(u, y2)
    assert loc1.shape == (8, 2, 16) and not torch.allclose(loc1, loc2)
    for bad in (dict(prefix_tokens=1, noise_tokens=2, posterior_input="pooled"), dict(prefix_tokens=2, noise_tokens=2)):
        with pytest.raises(ConfigError, match="noise_tokens"):
            NetConfig(**bad)
    with pytest.raises(ConfigError, match="pyro backend only"):
        dataclasses.replace(cfg, backend="numpyro")


def test_verifier_reward_scores_valid_and_new_solutions():
    from gram_ppl import get_task
    from gram_ppl.inference.finetune_pyro import checker_reward

    task = get_task("nqueens", 4)
    x = np.ones((1, 16), np.uint8)  # the empty 4x4 board: two solutions
    a, b = task.solutions(x[0])
    bad = np.ones(16, np.uint8)
    boards = np.stack([a, a, bad, b])[:, None]  # (K=4, P=1, 16)
    assert checker_reward(task, x, boards, 0.5)[:, 0].tolist() == [1.5, 1.0, 0.0, 1.5]


def test_reward_fine_tuning_gradient_and_reference(tmp_path, monkeypatch):
    """The leave-one-out REINFORCE loss: zero for equal rewards (the baseline removes them), a
    gradient on the prior heads only for unequal ones; the reference is the network fine-tuning
    started from, kept in the checkpoint."""
    from gram_ppl.inference import finetune_pyro, svi_pyro
    from gram_ppl.inference.run import fit

    cfg = dataclasses.replace(tiny_config(reward_weight=1.0, reward_samples=4, reward_puzzles=4, reward_kl=0.0),
                              priors=dataclasses.replace(gram_pyro.PRIORS, scale=0.5))  # fmt: skip
    data, x, y, n = _batch(cfg)
    trainer = svi_pyro.make_trainer(gram_pyro, cfg, data.task)
    with torch.no_grad():
        for p in trainer.net.prior_head.parameters():  # zero-initialised heads would pass no gradient on
            p.normal_(0, 0.1)
    torch.manual_seed(3)
    loss, reward = svi_pyro.reward_loss(trainer, x)  # untrained: every board invalid, every reward 0
    assert loss.item() == 0.0 and reward == 0.0
    ranked = lambda task, x, boards, bonus: np.arange(boards.shape[0], dtype=np.float32)[:, None].repeat(4, 1)  # noqa: E731
    monkeypatch.setattr(finetune_pyro, "checker_reward", ranked)  # rewards 0..K-1: non-zero advantages
    loss, reward = svi_pyro.reward_loss(trainer, x)
    assert torch.isfinite(loss) and reward == 1.5
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.net.prior_head.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in trainer.net.posterior_head.parameters())
    with pytest.raises(ConfigError, match="leave-one-out"):
        FitConfig(reward_weight=1.0, reward_samples=1)
    with pytest.raises(ConfigError, match="pyro backend only"):
        dataclasses.replace(tiny_config(reward_weight=1.0), backend="numpyro")
    with pytest.raises(ConfigError, match="stochastic variant"):
        FitConfig(reward_weight=1.0, variant="deterministic")
    # fine-tuning after SVI: the reference is the network the fine-tuning started from, kept on resume
    monkeypatch.undo()
    run = tmp_path / "run"
    plain = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, reward_weight=0.0))
    start = fit(plain, run, steps=2, progress=False, eval_puzzles=4)
    started = {k: v.clone() for k, v in start.trainer.net.state_dict().items()}
    tuned = fit(cfg, run, steps=4, resume=True, force=True, progress=False, eval_puzzles=4)
    assert all(torch.equal(tuned.trainer.reference.state_dict()[k], v) for k, v in started.items())
    assert [r["reward"] is not None for r in tuned.history if "loss" in r] == [False, False, True, True]
    again = fit(cfg, run, steps=5, resume=True, progress=False, eval_puzzles=4)
    assert all(torch.equal(again.trainer.reference.state_dict()[k], v) for k, v in started.items())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch.compile's
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")  # own internals
def test_compiled_core_trains_like_the_eager_one():
    """fit.compile: f_L / f_H torch.compiled in place; the same batch gives the same loss and KL
    (to float32 rounding), and the state_dict keeps the eager names (checkpoints interchange)."""
    from gram_ppl.inference import svi_pyro

    cfg = dataclasses.replace(tiny_config(T=1, n_sup=1), priors=gram_pyro.PRIORS)
    data, x, y, n = _batch(cfg)
    infos = []
    for compiled in (False, True):
        c = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, compile=compiled))
        torch.manual_seed(5)
        trainer = svi_pyro.make_trainer(gram_pyro, c, data.task)
        assert (trainer.net.f_L._compiled_call_impl is not None) == compiled
        torch.manual_seed(6)
        infos.append(trainer.train_batch(x, y, n))
        keys = list(trainer.net.state_dict())
    assert not any("_orig_mod" in k for k in keys)
    assert infos[1].loss == pytest.approx(infos[0].loss, rel=1e-4)
    np.testing.assert_allclose(infos[1].kl, infos[0].kl, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_bfloat16_core_trains_close_to_float32(backend):
    """net.precision="bfloat16": one training batch in each backend gives a finite loss within
    bfloat16 rounding of float32's (same weights, same noise), not the identical one, and every
    core weight gets a gradient step."""
    from gram_ppl.inference.backend import get_backend
    from gram_ppl.models import gram_numpyro

    mod, impl = gram_pyro if backend == "pyro" else gram_numpyro, get_backend(backend)
    cfg = dataclasses.replace(tiny_config(T=1, n_sup=1), priors=gram_pyro.PRIORS, backend=backend)
    data, x, y, n = _batch(cfg)
    losses = []
    for precision in ("float32", "bfloat16"):
        c = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, precision=precision))
        torch.manual_seed(5)
        trainer = impl.make_trainer(mod, c, data.task)
        before = {k: np.array(v) for k, v in impl.weights(trainer.sampling_net()).items()}
        torch.manual_seed(6)
        losses.append(trainer.train_batch(x.numpy(), y.numpy(), n).loss)
        after = impl.weights(trainer.sampling_net())
        core = [k for k in before if k.startswith(("f_L.", "f_H."))]
        assert core and all(not np.array_equal(before[k], np.asarray(after[k])) for k in core)
    assert np.isfinite(losses).all()
    assert losses[1] == pytest.approx(losses[0], rel=2e-2) and losses[1] != losses[0]


def test_lr_schedule_values_and_bad_input():
    fit = FitConfig(lr_decay=0.5)
    assert [fit.lr_scale(p) for p in (0.0, 0.5, 0.75, 1.0, 1.5)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert FitConfig().lr_decay == 0.5 and FitConfig.paper(1.0).lr_decay == 0.0  # the default; the paper's
    assert FitConfig(lr_decay=0.0).lr_scale(0.99) == 1.0  # constant
    assert FitConfig(lr_decay=1.0).lr_scale(0.25) == 0.75  # decay over the whole budget
    # a config written before the field existed trains as it did (constant), not with today's default
    from gram_ppl.config import from_dict, to_dict

    old = {k: v for k, v in to_dict(FitConfig()).items() if k != "lr_decay"}
    assert from_dict(FitConfig, old).lr_decay == 0.0 and from_dict(FitConfig, to_dict(FitConfig())).lr_decay == 0.5
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="lr_decay"):
            FitConfig(lr_decay=bad)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_lr_schedule_reaches_the_optimiser(backend, tmp_path):
    """A fit of 4 batches with the decay over its whole budget trains at lr · (1, 3/4, 1/2, 1/4)
    (history); a scale of 0 leaves every weight where it was (decoupled decay scaled too), a
    scale of 1 moves them."""
    from gram_ppl.inference.backend import get_backend
    from gram_ppl.inference.run import fit

    cfg = dataclasses.replace(tiny_config(lr_decay=1.0, weight_decay=0.5), backend=backend)
    if backend == "pyro":  # the loop that sets the scale is the same for both backends
        result = fit(cfg, tmp_path / "run", steps=4, progress=False, eval_puzzles=2)
        lrs = [r["lr"] for r in result.history if "loss" in r]
        np.testing.assert_allclose(lrs, [1e-3, 7.5e-4, 5e-4, 2.5e-4])

    from gram_ppl.models import gram_numpyro

    cfg = dataclasses.replace(cfg, priors=gram_pyro.PRIORS)
    data, x, y, n = _batch(cfg)
    trainer = get_backend(backend).make_trainer(gram_pyro if backend == "pyro" else gram_numpyro, cfg, data.task)

    def weights():
        return {k: np.array(v) for k, v in get_backend(backend).weights(trainer.sampling_net()).items()}

    before = weights()
    trainer.set_lr_scale(0.0)
    trainer.train_batch(x.numpy(), y.numpy(), n)
    assert all(np.array_equal(before[k], v) for k, v in weights().items())
    trainer.set_lr_scale(1.0)
    trainer.train_batch(x.numpy(), y.numpy(), n)
    assert any(not np.array_equal(before[k], v) for k, v in weights().items())


def test_the_prior_path_rule_and_its_defaults():
    """On by default for Sudoku generation only (stochastic variant, surrogate objective), with
    the "repair" target (6x6, 9x9) or the "train" target (4x4) anchored at the first step; other
    generation (digits) takes the "train" rule, its anchor on wherever the term is asked for; "y"
    and no anchor elsewhere; explicit values win; runs written before the fields existed keep
    what they trained with."""
    from gram_ppl.config import GramConfig, from_dict, prior_path, to_dict

    gen = GramConfig(task=TaskConfig(name="sudoku", size=4))  # 4x4: generation by default
    assert prior_path(gen) == (1.0, "train", True)
    for size in (6, 9):
        big = GramConfig(task=TaskConfig(name="sudoku", size=size, mode="generate"))
        assert prior_path(big) == (1.0, "repair", True)
    assert prior_path(GramConfig(task=TaskConfig(name="digits", size=8))) == (0.0, "train", True)  # off for digits
    assert prior_path(GramConfig(task=TaskConfig(name="sudoku", size=6))) == (0.0, "y", False)  # puzzles
    for off in (FitConfig(variant="deterministic"), FitConfig(objective="elbo"), FitConfig(prior_path_weight=0.0)):
        assert prior_path(dataclasses.replace(gen, fit=off)).weight == 0.0
    explicit = FitConfig(prior_path_weight=2.0, prior_path_target="batch", prior_path_anchor=False)
    assert prior_path(dataclasses.replace(gen, fit=explicit)) == (2.0, "batch", False)
    for bad in (-1.0, True, float("nan")):
        with pytest.raises(ConfigError, match="prior_path_weight must be"):
            FitConfig(prior_path_weight=bad)
    with pytest.raises(ConfigError, match="prior_path_weight needs the surrogate"):
        FitConfig(prior_path_weight=1.0, variant="deterministic")  # asked for where it cannot work
    old = to_dict(FitConfig())
    del old["prior_path_weight"], old["prior_path_target"], old["prior_path_anchor"]  # a config.json from before
    assert prior_path(dataclasses.replace(gen, fit=from_dict(FitConfig, old))) == (0.0, "y", False)


def test_the_sample_depth_default():
    """config.sample_depth: N_sup; for generation trained with the prior path 16·N_sup with the
    "repair" target, 4·N_sup with another anchored target, 8·N_sup without the anchor; 16·N_sup for
    Sudoku puzzles with one solution (either mixer) and N-Queens rows with the MLP mixer, 2·N_sup for
    N-Queens cells with it; or the field."""
    from gram_ppl.config import GramConfig, sample_depth

    gen = GramConfig(task=TaskConfig(name="sudoku", size=4))
    assert sample_depth(gen) == 16  # generation trains with the anchored prior path by default: 4·N_sup
    assert sample_depth(dataclasses.replace(gen, fit=FitConfig(prior_path_anchor=False))) == 32  # 8·N_sup
    assert sample_depth(dataclasses.replace(gen, fit=FitConfig(prior_path_weight=0.0))) == 4  # without it: N_sup
    gen6 = GramConfig(task=TaskConfig(name="sudoku", size=6, mode="generate"))
    assert sample_depth(gen6) == 64  # 6x6 grids train toward repaired boards by default: 16·N_sup
    assert sample_depth(dataclasses.replace(gen, fit=FitConfig(prior_path_target="repair"))) == 64
    assert sample_depth(dataclasses.replace(gen6, fit=FitConfig(prior_path_target="train"))) == 16
    assert sample_depth(GramConfig(task=TaskConfig(name="sudoku", size=6))) == 64  # unique puzzles: 16·N_sup
    assert sample_depth(GramConfig(task=TaskConfig(name="sudoku", size=4, mode="multi"))) == 4  # several solutions
    assert sample_depth(GramConfig(task=TaskConfig(name="nqueens", size=8))) == 8  # cells, MLP mixer: 2·N_sup
    assert sample_depth(GramConfig(task=TaskConfig(name="nqueens", size=10))) == 4  # cells, attention: N_sup
    rows10 = GramConfig(task=TaskConfig(name="nqueens_rows", size=10))  # the MLP mixer by default: 16·N_sup
    assert sample_depth(rows10) == 64
    assert sample_depth(dataclasses.replace(rows10, net=NetConfig(mixer="attention"))) == 4  # attention's rows: N_sup
    assert sample_depth(GramConfig(task=TaskConfig(name="nqueens_rows", size=8))) == 64  # the MLP too, since 2026-12-07
    assert sample_depth(GramConfig(task=TaskConfig(name="nqueens_rows", size=6))) == 4  # attention by default
    assert sample_depth(GramConfig(task=TaskConfig(name="sudoku", size=9), net=NetConfig(mixer="attention"))) == 64
    assert sample_depth(GramConfig(task=TaskConfig(name="digits", size=8))) == 4  # digits: the term is off
    assert sample_depth(dataclasses.replace(gen, fit=FitConfig(sample_depth=6))) == 6
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="sample_depth"):
            FitConfig(sample_depth=bad)


def test_the_sample_temperature_default():
    """config.sample_temperature: 1.5 for generation trained with the un-anchored prior path, 1
    elsewhere (anchored or repaired generation, puzzles, digits, no prior path); the field wins; a
    bad one is refused; runs written before the field existed sample at 1."""
    from gram_ppl.config import GramConfig, gram_config_from_dict, sample_temperature, to_dict

    gen = GramConfig(task=TaskConfig(name="sudoku", size=4))
    assert sample_temperature(gen) == 1.0  # anchored by default
    assert sample_temperature(dataclasses.replace(gen, fit=FitConfig(prior_path_anchor=False))) == 1.5
    for fit in (FitConfig(prior_path_weight=0.0, prior_path_anchor=False), FitConfig(variant="deterministic")):
        assert sample_temperature(dataclasses.replace(gen, fit=fit)) == 1.0
    assert sample_temperature(GramConfig(task=TaskConfig(name="sudoku", size=6, mode="generate"))) == 1.0
    assert sample_temperature(GramConfig(task=TaskConfig(name="sudoku", size=6))) == 1.0  # puzzles
    assert sample_temperature(GramConfig(task=TaskConfig(name="digits", size=8))) == 1.0
    assert sample_temperature(GramConfig(task=TaskConfig(name="nqueens", size=8))) == 1.0
    assert sample_temperature(dataclasses.replace(gen, fit=FitConfig(sample_temperature=0))) == 0.0
    assert sample_temperature(dataclasses.replace(gen, fit=FitConfig(sample_temperature=0.75))) == 0.75
    assert sample_temperature(dataclasses.replace(gen, fit=FitConfig(sample_temperature=0.75)), 0.0) == 0.0  # asked
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ConfigError, match="sample_temperature"):
            FitConfig(sample_temperature=bad)
    old = to_dict(dataclasses.replace(gen, fit=FitConfig(prior_path_anchor=False)))
    del old["fit"]["sample_temperature"]  # a config.json from before the field
    assert sample_temperature(gram_config_from_dict(old)) == 1.0


def test_the_prior_path_can_leave_the_prior_noise_heads_alone():
    """fit.prior_path_noise_grad false: the term's gradient reaches the core and the decoder but
    not the prior's μ_θ, σ_θ heads, in both backends; the term's value is unchanged."""
    import jax

    from gram_ppl.inference.svi_numpyro import PriorPath, prior_path_term
    from gram_ppl.inference.svi_pyro import Trainer, _PriorPath
    from gram_ppl.models import gram_numpyro
    from gram_ppl.networks import convert, flax_nets

    base = tiny_config(
        prior_path_weight=1.0,
        prior_path_samples=2,
        prior_path_puzzles=4,
        prior_path_anchor=False,
        prior_path_target="batch",
    )
    base = dataclasses.replace(base, task=TaskConfig(name="sudoku", size=4, mode="generate"), priors=gram_pyro.PRIORS)
    data, x, y, _ = _batch(base)
    torch.manual_seed(0)
    net = build_net(base, data.task)
    with torch.no_grad():
        for head in (net.prior_head, net.posterior_head):
            head.net.w_out.weight.normal_(0, 0.05)
    terms = {}
    for grad in (True, False):
        cfg = dataclasses.replace(base, fit=dataclasses.replace(base.fit, prior_path_noise_grad=grad))
        net.zero_grad()
        torch.manual_seed(1)
        term = _PriorPath(Trainer(gram_pyro, net, cfg, data.task), x, y).step(range(1))
        term.backward()
        terms[grad] = term.item()
        prior = sum(float(p.grad.abs().sum()) for p in net.prior_head.parameters() if p.grad is not None)
        core = sum(float(p.grad.abs().sum()) for p in net.f_H.parameters() if p.grad is not None)
        assert (prior > 0) is grad and core > 0
    assert terms[True] == pytest.approx(terms[False], rel=1e-6)  # the same draws, the same value

    params = convert.torch_to_flax({k: v.detach().numpy() for k, v in net.state_dict().items()}, False)
    fnet = flax_nets.build_net(base, data.task)
    pp = PriorPath(np.tile(x.numpy()[:4], (2, 1)), y.numpy(), np.ones((4, 8), bool))  # candidates (8, L_y)
    for grad in (True, False):
        cfg = dataclasses.replace(base, fit=dataclasses.replace(base.fit, prior_path_noise_grad=grad))

        def loss(p, cfg=cfg):
            return prior_path_term(p, jax.random.key(0), gram_numpyro, fnet, cfg, cfg.priors, pp, None, range(1))[0]

        g = jax.grad(loss)(params)
        prior = sum(float(np.abs(v).sum()) for v in jax.tree_util.tree_leaves(g["prior_head"]))
        assert (prior > 0) is grad
    with pytest.raises(ConfigError, match="prior_path_noise_grad"):
        FitConfig(prior_path_noise_grad="no")


def test_hard_9x9_with_the_mlp_mixer_cools_by_default():
    """task_defaults.COOLING: hard 9x9 Sudoku with the MLP mixer samples with τ falling from 3 to
    0 over its steps unless either temperature field is set; other tasks and attention keep one
    τ; config.json pins the schedule (resolved) and a resume's base gives it back (unresolved)."""
    from gram_ppl.config import (
        GramConfig,
        resolved,
        sample_temperature,
        sample_temperature_end,
        temperature_schedule,
        unresolved,
    )

    hard = GramConfig(task=TaskConfig(name="sudoku", size=9))
    assert (sample_temperature(hard), sample_temperature_end(hard)) == (3.0, 0.0)
    assert temperature_schedule(hard, 4) == (3.0, 2.0, 1.0, 0.0)
    assert temperature_schedule(hard, 4, 1.0) == (1.0,) * 4  # one τ asked: constant
    for fit, expected in ((FitConfig(sample_temperature=1.0), (1.0, 1.0)),  # a start set: one τ
                          (FitConfig(sample_temperature_end=1.0), (3.0, 1.0)),  # an end set: from the rule's start
                          (FitConfig(sample_temperature=2.0, sample_temperature_end=0.5), (2.0, 0.5))):  # fmt: skip
        assert temperature_schedule(dataclasses.replace(hard, fit=fit), 2) == expected
    attention = dataclasses.replace(hard, net=NetConfig(mixer="attention"))
    for cfg in (attention, GramConfig(task=TaskConfig(name="sudoku", size=6)), GramConfig()):
        assert len(set(temperature_schedule(cfg, 8))) == 1, cfg.task
    stored = resolved(hard)
    assert (stored.fit.sample_temperature, stored.fit.sample_temperature_end) == (3.0, 0.0)
    assert resolved(attention).fit.sample_temperature_end == resolved(attention).fit.sample_temperature == 1.0
    assert resolved(unresolved(stored)) == stored
    assert unresolved(stored).fit.sample_temperature_end is None  # today's default gives it: back to the rule
