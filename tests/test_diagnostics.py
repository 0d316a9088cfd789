"""ArviZ export, PSIS, R-hat across fits, trajectory collection, plots and `gram diagnose`."""

import dataclasses

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from tiny import tiny_config

from gram_ppl import plots
from gram_ppl.cli import main
from gram_ppl.data import build_dataset
from gram_ppl.diagnostics import (
    concat_fits,
    explain_loo,
    import_arviz,
    khat_threshold,
    pca_per_puzzle,
    prior_check_table,
    psis,
    rhat_across_fits,
    to_inference_data,
)
from gram_ppl.inference.run import fit, load_run
from gram_ppl.inference.svi_pyro import trajectory_loss
from gram_ppl.inference.trajectories import collect, prior_predictive
from gram_ppl.models import gram_pyro
from gram_ppl.tasks import get_task

QUIET = dict(progress=False, eval_puzzles=8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    fit(tiny_config(), root / "gram", steps=3, **QUIET)
    fit(tiny_config(seed=1), root / "gram1", steps=3, **QUIET)
    fit(tiny_config(variant="deterministic"), root / "det", steps=3, **QUIET)
    return root


def draws(run, source, n=6, puzzles=3, seed=0, latents=False):
    r = load_run(run)
    test = r.data.test
    x, y = test.x[:puzzles], test.y[:puzzles]
    return r, x, y, collect(r.mod, r.net, r.config, r.data.task, x, y, n, source=source, seed=seed, latents=latents)


# ---- collection ---------------------------------------------------------------------------
def test_collect_shapes_and_step_zero_is_the_initial_state(runs):
    r, x, y, t = draws(runs / "gram", "guide", latents=True)
    S = r.config.fit.n_sup
    assert t.board.shape == (6, 3, S + 1, r.data.task.y_len)
    assert t.h.shape == (6, 3, S + 1, *r.net.z0.shape[1:])
    for name in ("h_norm", "sigma", "kl", "log_lik", "eps_rms"):
        assert getattr(t, name).shape == (6, 3, S + 1)
    assert t.h_pca.shape == (6, 3, S + 1, 2)
    assert np.allclose(t.h[:, :, 0], r.net.z0[0].numpy())  # step 0: h_0 for every draw
    assert (t.kl[:, :, 0] == 0).all() and (t.kl[:, :, 1:] >= 0).all()
    assert ((t.halt_step >= 1) & (t.halt_step <= S)).all()
    assert np.array_equal(t.valid, r.data.task.is_valid(x[None], t.board[:, :, -1]))


def test_guide_kl_matches_the_training_loss(runs):
    r, x, y, t = draws(runs / "gram", "guide", n=1, seed=7)
    torch.manual_seed(7)  # the same noise draws as the collection (T = 2: the 2nd KL depends on them)
    with torch.no_grad():
        xs, ys = (torch.as_tensor(a.astype(np.int64)) for a in (x, y))
        terms = trajectory_loss(r.mod, r.net, r.config, r.config.priors, xs, ys, None, range(1), False)
    # the loss uses balanced KL whose value is the plain KL (averaged over puzzles)
    assert t.kl[0, :, 1].mean() == pytest.approx(terms.kl[0].item(), rel=1e-4)


def test_prior_draws_have_no_kl_and_are_reproducible(runs):
    *_, a = draws(runs / "gram", "prior", seed=3)
    *_, b = draws(runs / "gram", "prior", seed=3)
    assert (a.kl == 0).all()
    assert np.array_equal(a.board, b.board)


def test_deterministic_log_weights_are_constant_and_equal_the_likelihood(runs):
    *_, t = draws(runs / "det", "guide")
    assert np.ptp(t.log_weight, axis=0).max() < 1e-5
    assert np.allclose(t.log_weight, t.log_lik[:, :, -1], atol=1e-5)


def test_collect_refuses_bad_requests(runs):
    r = load_run(runs / "gram")
    x = r.data.test.x[:2]
    with pytest.raises(ValueError, match="need the reference"):
        collect(r.mod, r.net, r.config, r.data.task, x, None, 2, source="guide")
    with pytest.raises(ValueError, match="source"):
        collect(r.mod, r.net, r.config, r.data.task, x, None, 2, source="posterior")


def test_prior_predictive_uses_the_priors_block_of_an_untrained_net(runs):
    r = load_run(runs / "gram")
    t = prior_predictive(r.config, r.data.task, r.data.test.x[:2], 5)
    rows = prior_check_table(t)
    assert [row["step"] for row in rows] == list(range(r.config.fit.n_sup + 1))
    assert rows[0]["sigma"] == r.config.priors.init_scale
    assert rows[1]["sigma"] == pytest.approx(r.config.priors.scale, rel=1e-3)  # zero-initialised scale heads
    assert rows[0]["distinct_boards"] == pytest.approx(1 / 5)  # z_0 is shared by every draw


# ---- export ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def idata(runs):
    r, x, y, guide = draws(runs / "gram", "guide")
    *_, prior = draws(runs / "gram", "prior", seed=1)
    sols = [r.data.task.solutions(p) for p in x]
    return to_inference_data(x, y, posterior=guide, prior=prior, task=r.data.task, solutions=sols,
                             attrs={"seed": 5, "priors": {"a": 1}})  # fmt: skip


def test_export_follows_arviz_schema(idata, runs):
    r = load_run(runs / "gram")
    S = r.config.fit.n_sup
    assert set(idata.groups()) == {
        "posterior", "prior", "posterior_predictive", "prior_predictive", "observed_data", "log_likelihood",
        "sample_stats", "sample_stats_prior", "constant_data",
    }  # fmt: skip
    stats = {"board", "valid", "conflicts", "match", "distance"}
    assert set(idata.observed_data.data_vars) == stats
    for group in ("posterior_predictive", "prior_predictive"):  # the observed names, and the argmax decode's
        assert set(idata[group].data_vars) == stats | {f"{k}_argmax" for k in stats}, group
    assert idata.posterior_predictive["board"].dims == ("chain", "draw", "puzzle", "cell")
    assert idata.observed_data["board"].dims == ("puzzle", "cell")
    assert (idata.observed_data["valid"] == 1).all() and (idata.observed_data["distance"] == 0).all()
    assert idata.log_likelihood["board"].dims == ("chain", "draw", "puzzle", "cell")  # per cell, as observed
    assert set(idata.posterior.data_vars) == {"noise_rms"}  # real-valued, varies across draws: az.summary is short
    assert (idata.posterior["noise_rms"] > 0).all() and float(idata.posterior["noise_rms"].std("draw").min()) > 0
    assert idata.sample_stats["h_pca"].dims == ("chain", "draw", "puzzle", "step", "pc")
    assert list(idata.sample_stats.pc.values) == [0, 1] and list(idata.sample_stats.step.values) == list(
        range(1, S + 1)
    )
    assert idata.sample_stats["log_weight"].dims == ("chain", "draw", "puzzle")
    assert idata.posterior.sizes["draw"] == 6 and idata.posterior.sizes["puzzle"] == 3
    assert "h" not in idata.posterior  # full states are opt-in
    assert "z_0" in idata.posterior.attrs["step_note"] and "gram compare --elpd" in idata.attrs["loo"]
    for group in idata.groups():
        assert all(idata[group][v].attrs.get("description") for v in idata[group].data_vars), group
    pp = idata.prior_predictive
    x = r.data.test.x[:3]
    for name in ("board", "board_argmax"):
        suffix = name.removeprefix("board")
        boards = pp[name].values[0]  # (N, B, L_y)
        assert np.array_equal(pp[f"valid{suffix}"].values[0], r.data.task.is_valid(x[None], boards))
        assert ((pp[f"distance{suffix}"] == 0) == (pp[f"valid{suffix}"] == 1)).all()  # valid exactly at a solution


def test_predictive_boards_are_likelihood_draws_and_the_log_likelihood_is_per_cell(runs):
    r, x, y, guide = draws(runs / "gram", "guide", n=64)
    assert np.isfinite(guide.log_lik_cells).all()
    np.testing.assert_allclose(guide.log_lik_cells.sum(-1), guide.log_lik[:, :, -1], rtol=1e-4, atol=1e-4)
    argmax = guide.board[:, :, -1]
    assert guide.board_draw.shape == argmax.shape
    assert (guide.board_draw != argmax).any()  # drawn cell by cell, not the mode (a barely trained decoder)
    again = draws(runs / "gram", "guide", n=64)[3]
    np.testing.assert_array_equal(again.board_draw, guide.board_draw)  # seeded


@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:matplotlib.MatplotlibDeprecationWarning")
@pytest.mark.filterwarnings(
    "ignore:The inplace keyword in DataFrame.sort_values:pandas.errors.Pandas4Warning"
)  # az.compare
def test_arviz_functions_work_without_warnings(idata, runs):
    """az.summary and az.plot_posterior defaults, az.loo, az.plot_loo_pit and az.plot_ppc (with the
    observed data, for the posterior and the prior) on the export, warnings as errors (no floods)."""
    import warnings

    import matplotlib.pyplot as plt

    az = import_arviz()
    summary = az.summary(idata, kind="stats")
    assert list(summary.index) == [f"noise_rms[{b}]" for b in range(3)]  # one real-valued row per puzzle
    assert np.isfinite(summary["mean"].values).all()
    assert len(az.summary(idata)) == 3  # the defaults too (ArviZ logs that one chain has no R-hat)
    with warnings.catch_warnings():  # with 6 draws its Pareto-k warning is the diagnostic itself, not noise
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
        loo = az.loo(idata, pointwise=True)
        assert loo.pareto_k.shape == (3, idata.observed_data.sizes["cell"])  # one observation per cell
        assert len(az.compare({"a": idata, "b": idata.copy()})) == 2
        try:
            az.plot_loo_pit(idata, y="board")
            axes = az.plot_posterior(idata)
            assert np.asarray(axes).size == 3
            for group in ("posterior", "prior"):
                axes = az.plot_ppc(idata, group=group, observed=True, var_names=["conflicts"], num_pp_samples=4)
                assert any(line.get_label() == "Observed" for ax in np.ravel(axes) for line in ax.get_lines())
        finally:
            plt.close("all")
    fig = plots.arviz_plot(az.plot_ppc, idata, group="prior", var_names=["conflicts"], num_pp_samples=4)
    assert isinstance(fig, plots.PlotFigure) and fig._repr_png_()[:4] == b"\x89PNG" and len(fig.axes) >= 1
    assert plt.get_fignums() == []  # drawn into its own figure, not pyplot's
    assert "gram compare --elpd" in explain_loo(idata) and "not written by gram_ppl" in explain_loo(az.from_dict({}))


def test_netcdf_round_trip(idata, tmp_path):
    az = import_arviz()
    path = tmp_path / "t.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    np.testing.assert_array_equal(back.prior_predictive["board"].values, idata.prior_predictive["board"].values)
    assert back.posterior.attrs["priors"] == '{"a": 1}'
    summary = az.summary(back, var_names=["noise_rms"], kind="stats")
    assert len(summary) == 3


def test_export_refuses_inconsistent_input(runs):
    r, x, y, guide = draws(runs / "gram", "guide")
    with pytest.raises(ValueError, match="reference solutions"):
        to_inference_data(x, None, posterior=guide)
    with pytest.raises(ValueError, match="cover 3 puzzles"):
        to_inference_data(x[:2], y[:2], posterior=guide)
    with pytest.raises(ValueError, match="nothing to export"):
        to_inference_data(x, y)
    with pytest.raises(ValueError, match="solution sets"):
        to_inference_data(x, y, posterior=guide, task=r.data.task, solutions=[])


def test_rhat_across_two_fits_on_identifiable_quantities_only(runs):
    fits = []
    for name in ("gram", "gram1"):
        r, x, y, t = draws(runs / name, "prior", n=8)
        fits.append(to_inference_data(x, y, prior=t, task=r.data.task))
    with pytest.raises(ValueError, match="two independent fits"):
        rhat_across_fits(fits[0])
    both = concat_fits(fits)
    assert both.prior_predictive.sizes["chain"] == 2
    rhat = rhat_across_fits(both)
    assert rhat["valid"].shape == (3,) and rhat["match"].shape == (3,)
    assert rhat["log_lik"].shape == (3,) and np.isfinite(rhat["log_lik"]).all()
    with pytest.raises(ValueError, match="identifiable"):
        rhat_across_fits(both, var_names=("h_pca",))


# ---- PSIS -----------------------------------------------------------------------------------------
def _normal_log_weights(guide_scale, dims, S=2000, B=4, seed=0):
    """log p(z) − log q(z) for a N(0, I) target and a N(0, guide_scale² I) guide in `dims`
    dimensions, z ~ q (S draws for each of B puzzles)."""
    rng = np.random.default_rng(seed)
    z = guide_scale * rng.standard_normal((S, B, dims))
    return (-0.5 * z**2 + 0.5 * (z / guide_scale) ** 2 + np.log(guide_scale)).sum(-1)


def test_psis_khat_small_for_a_good_guide_and_large_for_a_mismatched_one():
    good = psis(_normal_log_weights(1.2, dims=4))  # a little wider than the posterior: bounded weights
    bad = psis(_normal_log_weights(0.5, dims=8))  # far too narrow: infinite-variance weights
    assert (good.khat < 0.5).all()
    assert (bad.khat > good.threshold).all() and bad.khat.mean() > 0.7
    assert (good.ess > 10 * bad.ess).all()
    assert np.allclose(good.log_marginal, 0.0, atol=0.05)  # both densities are normalised


def test_psis_constant_weights_and_bad_input():
    r = psis(np.full((10, 2), -3.0))
    assert np.isnan(r.khat).all() and r.constant.all() and np.allclose(r.log_marginal, -3.0)
    with pytest.raises(ValueError, match="nan or inf"):
        psis(np.array([[0.0, -np.inf], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="draws"):
        psis(np.zeros(5))


def test_khat_threshold_is_sample_size_aware():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(10**6) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        khat_threshold(1)


def test_pca_recovers_a_plane_and_survives_flushed_denormals():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((12, 2)))[0]  # (12, 2) orthonormal
    coords = rng.standard_normal((5, 1, 4, 2)) * [3.0, 1.0]
    h = (coords @ basis.T).reshape(5, 1, 4, 3, 4)  # (N, B, S+1, L, D) in a plane
    torch.set_flush_denormal(True)
    try:
        p = pca_per_puzzle(h)
    finally:
        torch.set_flush_denormal(False)
    fitted = p[:, 0, 1:].reshape(-1, 2)
    target = coords[:, 0, 1:].reshape(-1, 2) - coords[:, 0, -1].mean(0)  # centred on the final states
    # same plane: the scores are an orthogonal transform of the true coordinates
    assert np.allclose(
        np.sort(np.linalg.svd(fitted, compute_uv=False)), np.sort(np.linalg.svd(target, compute_uv=False))
    )


def test_pca_axes_are_fitted_on_the_final_states_and_the_fan_shows_the_split():
    rng = np.random.default_rng(1)
    N, S1 = 40, 5
    drift = np.linspace(0, 50, S1)[None, :, None] * np.array([1.0, 0.0, 0.0])  # every draw moves along axis 0
    side = np.where(np.arange(N) < N // 2, -1.0, 1.0)[:, None]  # two solutions apart along axis 1 ...
    split = np.clip(np.arange(S1) - 2, 0, None)[None, :] * side  # ... from step 3 on
    h = drift + np.stack([np.zeros((N, S1)), split, np.zeros((N, S1))], -1) + 0.01 * rng.standard_normal((N, S1, 3))
    p = pca_per_puzzle(h[:, None])[:, 0]  # (N, S+1, 2)
    assert abs(np.corrcoef(p[:, -1, 0], side[:, 0])[0, 1]) > 0.99  # PC 1 separates the final solutions
    keys = [b"a" if v < 0 else b"b" for v in side[:, 0]]
    ratio = plots.split_ratio(p, keys)
    assert (ratio[:3] < 1).all() and (ratio[3:] > 1).all()
    fig = plots.trajectory_fan(p, keys)
    assert any("split at step 3" in t.get_text() for t in fig.axes[1].get_legend().get_texts())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["solution 1 (20)", "solution 2 (20)"]  # in rank order


def test_commit_steps_and_the_commit_plot():
    from gram_ppl.diagnostics import commit_steps

    boards = np.array([[[0], [1], [2], [2]], [[0], [2], [1], [2]], [[2], [2], [2], [2]]])  # (N, S+1, L)
    assert commit_steps(boards).tolist() == [2, 3, 0]
    valid = boards[..., 0] == 2
    fig = plots.commit_plot(boards, valid, vocab=3)
    assert len(fig.axes) == 3 and fig._repr_png_()[:4] == b"\x89PNG"
    lo, hi = plots.binomial_interval(np.array([0, 5, 10]), 10)
    assert lo[0] == 0 and hi[-1] == pytest.approx(1) and lo[1] < 0.5 < hi[1]


# ---- plots --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,size", [("nqueens", 5), ("nqueens_rows", 5), ("sudoku", 4), ("coloring", 5), ("coloring_rows", 5)]
)
def test_plot_functions_return_figures_without_pyplot(name, size):
    import matplotlib.pyplot as plt

    task = get_task(name, size)
    rng = np.random.default_rng(0)
    x = np.ones(task.x_len, dtype=np.uint8)
    if name == "coloring":
        x[:3] = 2  # a few edges
    if name == "coloring_rows":
        x[:2] = [1 + 2, 1 + 1]  # the edge 0-1 (each vertex's token is 1 + its neighbour mask)
    samples = rng.integers(1, task.y_vocab, size=(7, task.y_len)).astype(np.uint8)
    samples[:3] = task.solutions(x, limit=1)[0]
    figs = [
        plots.hypothesis_gallery(task, x, samples),
        plots.coverage_and_depth({"a": {"coverage_curve": [0.1, 0.3], "valid_by_depth": [0.2, 0.4]}}),
        plots.trajectory_fan(rng.standard_normal((7, 3, 2)), [b"a", None, b"b", b"a", None, b"a", b"c"]),
        plots.entropy_heatmap(np.stack([samples] * 3, 1), task.y_vocab, task.board_shape),
        plots.hamming_histogram(samples),
        plots.training_traces(
            [
                {"step": 1, "loss": 2.0, "ce": 1.5, "kl": [0.1, 0.2], "lr": 1e-3},
                {"step": 2, "loss": 1.0, "ce": 0.5, "kl": [0.1, 0.0], "lr": 5e-4},
                {
                    "step": 2,
                    "eval": {"prior_valid": 0.25, "guide_valid": 0.5, "heldout_log_p": -3.0},
                    "eval_puzzles": 8,
                },
            ]
        ),
        plots.khat_plot(np.array([0.2, 0.9]), 0.5),
        plots.solution_coverage(task, x, samples, task.solutions(x, limit=3)),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert np.prod(task.board_shape) == task.y_len  # the entropy map's layout holds every position
    assert plt.get_fignums() == []  # nothing registered with pyplot, nothing shown
    title = figs[0].texts[0].get_text()
    assert "distinct boards" in title


def test_training_traces_show_running_means_learning_rate_and_intervals():
    history = [{"step": i, "loss": 5.0 + (i % 2), "ce": 1.0, "kl": [0.5], "lr": 1e-3 * (1 - i / 200)}
               for i in range(1, 201)]  # fmt: skip
    history.append({"step": 200, "eval": {"prior_valid": 0.5}, "eval_puzzles": 100})
    fig = plots.training_traces(history)
    loss_ax = fig.axes[0]
    smooth = loss_ax.get_lines()[1].get_ydata()
    assert np.allclose(smooth[10:], 5.5, atol=0.13)  # the running mean of an alternating 5, 6
    assert fig.axes[3].get_lines()[0].get_ydata()[-1] == pytest.approx(0.0)  # the learning rate, decayed
    band = fig.axes[4].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.404, abs=0.01) and band.max() == pytest.approx(
        0.596, abs=0.01
    )  # Wilson, n=100
    assert plots.running_mean(np.array([1.0, 3.0, 5.0]), 2).tolist() == [1.0, 2.0, 4.0]
    # generation: the prior's share counts its draws of the blank input, the guide's the held-out grids
    history[-1] = {"step": 200, "eval": {"prior_valid": 0.5, "guide_valid": 0.5}, "eval_puzzles": 58,
                   "prior_draws": 400}  # fmt: skip
    prior_band, guide_band = (
        c.get_paths()[0].vertices[:, 1] for c in plots.training_traces(history).axes[4].collections
    )
    assert np.ptp(prior_band) == pytest.approx(0.098, abs=0.005) and np.ptp(guide_band) > 0.2  # n = 400, n = 58


def test_fit_evaluates_every_n_batches(tmp_path):
    result = fit(tiny_config(), None, steps=6, progress=False, eval_every=2, eval_puzzles=4)
    assert [r["step"] for r in result.history if "eval" in r] == [2, 4, 6]  # and none twice at the end
    assert all(r["eval_puzzles"] == 4 for r in result.history if "eval" in r)
    with pytest.raises(ValueError, match="eval_every"):
        fit(tiny_config(), None, steps=1, progress=False, eval_every=0)


def test_evaluations_by_time_take_at_most_a_tenth_of_the_run(monkeypatch):
    """With eval_every_s, an evaluation that took d seconds waits 10·d for the next (a deep 9x9
    generation evaluation would otherwise eat the budget); by batches, the schedule is kept."""
    import time

    from gram_ppl.inference.run import TrainLoop

    evaluate = TrainLoop.evaluate

    def slow(self, eval_puzzles):
        time.sleep(0.1)  # an evaluation far dearer than a tiny batch
        return evaluate(self, eval_puzzles)

    monkeypatch.setattr(TrainLoop, "evaluate", slow)
    start = time.monotonic()
    result = fit(tiny_config(), None, steps=30, progress=False, eval_every=None, eval_every_s=1e-9, eval_puzzles=4)
    evals = sum("eval" in r for r in result.history)
    # the first batch's, then at least 10 x 0.1 s apart, and the one at the end: never one per batch
    assert 2 <= evals <= 2 + (time.monotonic() - start) / 1.0 < 30, evals
    by_batches = fit(tiny_config(), None, steps=6, progress=False, eval_every=1, eval_puzzles=4)
    assert sum("eval" in r for r in by_batches.history) == 6


def test_the_progress_bar_redraws_at_most_about_once_a_second_and_leaves_a_summary(capsys):
    import time

    start = time.monotonic()
    fit(tiny_config(), None, steps=40, progress=True, eval_every=1000, eval_puzzles=4)
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert err.count("\r") <= seconds + 4  # not one redraw per batch (a notebook kept 2 outputs per batch)
    assert "fit: 40 batches" in err.splitlines()[-1] and "prior_valid" in err.splitlines()[-1]


def test_prior_predictive_check_pools_networks_and_draws_per_block():
    from gram_ppl.inference.trajectories import prior_predictive_check

    cfg = tiny_config()
    task = get_task("nqueens", 5)
    data = build_dataset(cfg.task)
    x = data.test.x[:3]
    sols = [task.solutions(p) for p in x]
    blocks = {"normal": gram_pyro.PRIORS, "wide studentt": dataclasses.replace(gram_pyro.PRIORS, family="studentt",
                                                                               scale=0.9)}  # fmt: skip
    stats = prior_predictive_check(cfg, task, x, blocks, solutions=sols, inits=2, num_samples=5)
    for name in blocks:
        st = stats[name]
        assert st["valid"].shape == st["conflicts"].shape == st["distance"].shape == (2 * 5 * 3,)
        assert st["distinct"].shape == (2 * 3,) and st["h_norm"].shape == (2 * 5 * 3, cfg.fit.n_sup + 1)
        assert ((st["distance"] == 0) == st["valid"]).all()
    a, b = np.split(stats["normal"]["h_norm"][:, 0], 2)  # z_0 of each network: the inits differ
    assert not np.allclose(a, b)
    fig = plots.prior_check(stats, num_cells=task.y_len)
    assert len(fig.axes) == 5 and fig._repr_png_()[:4] == b"\x89PNG"


def test_distinct_growth_counts_new_valid_boards_against_the_uniform_expectation():
    boards = np.array([[1], [1], [2], [3], [2]])
    fig = plots.distinct_growth(boards, np.array([True, True, False, True, True]), total=4)
    lines = fig.axes[0].get_lines()
    assert lines[0].get_ydata().tolist() == [1, 1, 1, 2, 3]
    assert lines[1].get_ydata()[0] == pytest.approx(1.0) and lines[1].get_ydata()[-1] < 4  # K(1 − (1 − 1/K)^n)


def test_solution_coverage_counts_samples_whatever_their_integer_type():
    task = get_task("sudoku", 4)
    x = np.ones(16, dtype=np.uint8)
    x[:3] = [2, 3, 4]  # a few clues: several solutions
    sols = task.solutions(x)  # uint8
    samples = np.stack([sols[0], sols[0], sols[1]]).astype(np.int64)  # as sampled (and as InferenceData holds them)
    fig = plots.solution_coverage(task, x, samples, sols)
    assert fig.axes[0].get_title().startswith(f"coverage 2/{len(sols)}")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[0] == pytest.approx(2 / 3) and heights[1] == pytest.approx(1 / 3) and heights[-1] == pytest.approx(0)


def test_trajectory_fan_keeps_every_step_of_inference_data_latents():
    rng = np.random.default_rng(1)
    keys = [b"a", None, b"b"]
    with_z0 = plots.trajectory_fan(rng.standard_normal((3, 5, 2)), keys)  # z_0 + 4 steps: z_0 left out
    steps_only = plots.trajectory_fan(rng.standard_normal((3, 4, 2)), keys, with_z0=False)  # steps 1..4
    assert "steps 1–4" in with_z0.axes[0].get_title() and "steps 1–4" in steps_only.axes[0].get_title()
    assert len(with_z0.axes[0].lines[0].get_xdata()) == len(steps_only.axes[0].lines[0].get_xdata()) == 4


def test_gallery_puts_valid_boards_first_and_marks_conflicting_cells():
    task = get_task("sudoku", 4)
    x = np.ones(16, dtype=np.uint8)
    good = task.solutions(x, limit=1)[0]
    bad = good.copy()
    bad[1] = bad[0]  # a digit repeated in row 0 (and so in its column or box too)
    fig = plots.hypothesis_gallery(task, x, np.stack([bad, bad, bad, good]))
    assert fig.axes[0].get_title().endswith("(valid)") and fig.axes[1].get_title().endswith("(invalid)")
    others = [s for s in task.solutions(x, limit=12)]  # 12 valid boards, one each, and 12 copies of `bad`:
    fig = plots.hypothesis_gallery(task, x, np.stack(others + [bad] * 12), max_boards=4)  # half the samples
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sum(t.endswith("(invalid)") for t in titles) == 1 and len(titles) == 4  # shown, with its count
    assert "12/24 (invalid)" in titles
    marked = plots.conflict_cells(task, x, bad)
    assert marked[0] and marked[1] and marked.sum() >= 2 and not plots.conflict_cells(task, x, good).any()
    queens = get_task("nqueens", 4)
    board = np.ones(16, dtype=np.uint8)
    board[[0, 5, 11]] = 2  # (0,0) and (1,1) share a diagonal; (2,3) attacks neither
    assert np.flatnonzero(plots.conflict_cells(queens, np.ones(16, np.uint8), board)).tolist() == [0, 5]
    cover = plots.solution_coverage(task, x, np.stack([good, good, bad]), task.solutions(x, limit=4))
    assert "coverage 1/4 solutions" in cover.axes[0].get_title()


def test_plot_functions_refuse_empty_input():
    task = get_task("nqueens", 5)
    with pytest.raises(ValueError):
        plots.hypothesis_gallery(task, np.ones(25, dtype=np.uint8), np.zeros((0, 25)))
    with pytest.raises(ValueError):
        plots.training_traces([{"step": 1, "eval": {}}])
    with pytest.raises(ValueError):
        plots.coverage_and_depth({})


# ---- gram diagnose ------------------------------------------------------------------------------
def test_gram_diagnose_end_to_end(runs, tmp_path, capsys):
    az = import_arviz()
    out = tmp_path / "report"
    args = ["diagnose", str(runs / "gram"), "--out", str(out), "--num-samples", "8", "--num-puzzles", "3"]
    assert main([*args, "--baseline", str(runs / "det")]) == 0
    assert "summary.md" in capsys.readouterr().err
    for name in ("summary.md", "trajectories.nc", "gallery.png", "solutions.png", "coverage.png", "fan.png", "entropy.png",
                 "hamming.png", "traces.png", "khat.png", "commit.png"):  # fmt: skip
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "k̂ threshold for 8 draws" in summary and "(khat.png)" in summary
    assert "Priors: transition noise normal, σ network (scale 0.1" in summary  # the PRIORS block in force
    back = az.from_netcdf(str(out / "trajectories.nc"))
    assert back.posterior.sizes["puzzle"] == 3 and back.posterior.sizes["draw"] == 8
    assert main(args) == 2  # an existing report is kept, refused before any work is announced
    err = capsys.readouterr().err
    assert "already there" in err and "trajectories per puzzle" not in err
    assert main([*args[:-2], "--num-puzzles", "3", "--puzzle", "7", "--out", str(tmp_path / "p7")]) == 2
    assert "puzzle 7 is not among the 3" in capsys.readouterr().err
    assert main([*args, "--puzzle", "2", "--force"]) == 0
    assert "(figures of puzzle 2)" in capsys.readouterr().err
    assert "per-puzzle figures: puzzle 2" in (out / "summary.md").read_text()
    across = tmp_path / "across"
    assert main(["diagnose", str(runs / "gram"), str(runs / "gram1"), "--out", str(across), "--num-samples", "8",
                 "--num-puzzles", "3"]) == 0  # fmt: skip
    text = (across / "summary.md").read_text()
    assert "## R-hat across 2 fits" in text and "| valid |" in text and "| log_lik |" in text


def test_diagnose_refuses_r_hat_across_different_models_unless_asked(runs, tmp_path, capsys):
    out = tmp_path / "mixed"
    args = ["diagnose", str(runs / "gram"), str(runs / "det"), "--out", str(out), "--num-samples", "4",
            "--num-puzzles", "2"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "fit.variant" in err and "differ in the seed alone" in err and not out.exists()
    assert main([*args, "--mixed-configs"]) == 0
    assert "## R-hat across 2 fits" in (out / "summary.md").read_text()


def test_gram_diagnose_with_a_puzzle_file_and_bad_lines(runs, tmp_path, capsys):
    r = load_run(runs / "gram")
    task = r.data.task
    good = task.format_puzzle(r.data.test.x[0])
    path = tmp_path / "p.txt"
    path.write_text(good + "\nQQQQQ\n")
    out = tmp_path / "rep"
    args = ["diagnose", str(runs / "det"), "--puzzles", str(path), "--num-samples", "4", "--out", str(out)]
    assert main(args) == 2
    assert "p.txt:2" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    summary = (out / "summary.md").read_text()
    assert "PSIS is not defined" in summary  # deterministic: constant weights


# arviz 0.23's plotting code calls a matplotlib helper that 3.11 deprecates (upstream, not ours)
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping:matplotlib.MatplotlibDeprecationWarning")
def test_arviz_plot_functions_work_on_the_export(idata):
    import matplotlib.pyplot as plt

    az = import_arviz()
    try:
        axes = az.plot_posterior(idata, var_names=["noise_rms"], coords={"puzzle": [0, 1]})
        assert np.asarray(axes).size == 2
        az.plot_forest(idata, var_names=["noise_rms"], combined=True)
        az.plot_dist(idata.sample_stats["log_weight"].values.ravel())
    finally:
        plt.close("all")


def test_a_digit_image_with_ink_is_drawn_without_givens():
    """Digits' puzzle text is a label, not a grid: no cell counts as a given (an inked pixel once
    indexed the one-character label)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gram_ppl import get_task

    task = get_task("digits", 8)
    y = np.ones(64, np.uint8)
    y[[7, 20, 63]] = 2  # inked pixels
    fig, ax = plt.subplots()
    plots.draw_board(ax, task, np.ones(64, np.uint8), y, valid=True)
    assert len(ax.texts) == 3 and all(t.get_fontweight() == "normal" for t in ax.texts)
    plt.close(fig)
