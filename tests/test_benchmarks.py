"""Every benchmark script runs (tiny sizes: smoke runs, not measurements); the three that
compile JAX programs are in test_benchmarks_jax.py (a module of their own, so that pytest-xdist
puts them on the other worker)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "tasks.py",
    "numpyro_loss_ab.py",
    "training.py",
    "sampling.py",
    "recipe.py",
    "quality.py",
    "backends.py",
    "startup.py",
    "scaling.py",
    "temperature.py",
    "width_depth.py",
    "digits_vae.py",
    "gen_diffusion.py",
    "depth_metric.py",
    "prior_hole.py",
}


def run(script, *args):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_benchmark_script_is_smoke_tested():
    assert {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"common.py"} == SCRIPTS


def test_tasks_benchmark(tmp_path):
    out = run("tasks.py", "--hard", "3", "--repeats", "1", "--skip-builds", "--json", str(tmp_path / "t.json"))
    assert "enumerate all 12-Queens solutions" in out
    assert len(json.loads((tmp_path / "t.json").read_text())["rows"]) == 4


@pytest.mark.slow
def test_training_benchmark(tmp_path):
    out = run("training.py", "--dims", "16", "--repeats", "2", "--batches", "8", "--bfloat16", "--json",
              str(tmp_path / "t.json"))  # fmt: skip
    rows = json.loads((tmp_path / "t.json").read_text())
    assert "median ratio" in out and rows["overhead"][0]["median_ratio"] > 0 and len(rows["memory"]) == 2
    assert [r["precision"] for r in rows["throughput"]] == ["float32", "bfloat16"] and "eager, bfloat16" in out


def test_sampling_benchmark():
    out = run("sampling.py", "--quick")
    assert "trajectory-steps/s" in out and "speed-up" in out


def test_recipe_curves(tmp_path):
    from gram_ppl.inference.run import fit

    fit(tiny_config(), tmp_path / "a", steps=2, progress=False, eval_puzzles=4)
    out = run("recipe.py", str(tmp_path / "a"), "--out", str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000 and "| a |" in out


def test_temperature_curves(tmp_path):
    from gram_ppl.inference.run import fit

    fit(tiny_config(), tmp_path / "a", steps=2, progress=False, eval_puzzles=4)
    js = tmp_path / "t.json"
    out = run("temperature.py", str(tmp_path / "a"), "--taus", "0,1", "--num-samples", "3", "--puzzles", "4",
              "--out", str(tmp_path / "t.png"), "--json", str(js))  # fmt: skip
    rows = json.loads(js.read_text())["rows"][str(tmp_path / "a")]
    assert f"| {tmp_path.name}/a: valid / coverage |" in out and [r["tau"] for r in rows] == [0.0, 1.0]
    assert all(0 <= r["valid"] <= 1 and 0 <= r["coverage"] <= 1 and r["puzzles"] == 4 for r in rows)
    assert (tmp_path / "t.png").stat().st_size > 1000
    again = run("temperature.py", "--load", str(js), "--out", str(tmp_path / "u.png"))  # redrawn without sampling
    assert again == out and (tmp_path / "u.png").stat().st_size > 1000


@pytest.mark.slow
def test_quality_benchmark(tmp_path):
    args = [
        "--tasks",
        "nqueens8,gen4",
        "--seeds",
        "0,1",
        "--steps",
        "1",
        "--set",
        "net.dim=16",
        "--set",
        "net.layers=1",
    ]
    args += [
        "--samples",
        "3",
        "--puzzles",
        "4",
        "--gen",
        "20",
        "--out",
        str(tmp_path / "q"),
        "--json",
        str(tmp_path / "q.json"),
    ]
    out = run("quality.py", *args)
    assert "| nqueens8 | gram | 2 |" in out and "| gen4 | deterministic | 2 |" in out
    rows = json.loads((tmp_path / "q.json").read_text())
    assert [(r["task"], r["variant"], len(r["runs"])) for r in rows][0] == ("nqueens8", "gram", 2)
    assert (tmp_path / "q" / "gen4-gram-s1" / "checkpoint.pt").is_file()
    again = run("quality.py", *args)  # finished folders are reused, not retrained
    assert again == out
    one = run(
        "quality.py", "--tasks", "digits,arc1_10", "--variants", "gram", "--seeds", "0", *args[4:]
    )  # one fit each
    assert "| digits | gram | 1 |" in one and "recognisable" in one
    assert "| arc1_10 | gram | 1 |" in one and "pass@2 0.0% of 1 test pairs" in one  # 4 rows: one pair's versions


def test_quality_benchmark_scores_puzzles_at_the_sample_depth(tmp_path):
    """sudoku6 (unique solutions): exact accuracy at the run's sample depth (16·N_sup), the curve
    up to it, the vote taken there."""
    small = ["task.num_train=24", "task.num_test=6", "fit.batch_size=8", "net.dim=16", "net.layers=1", "fit.n_sup=1"]
    small += ["priors.rank=2"]  # priors.* reach the PRIORS block, as with gram fit
    args = ["--tasks", "sudoku6", "--variants", "gram", "--seeds", "0", "--steps", "1", "--samples", "2"]
    args += [a for kv in small for a in ("--set", kv)] + [
        "--out",
        str(tmp_path / "q"),
        "--json",
        str(tmp_path / "q.json"),
    ]
    out = run("quality.py", *args)
    assert "| sudoku6 | gram | 1 |" in out and "% at depth 16; by depth 1: " in out and "16: " in out
    (r,) = json.loads((tmp_path / "q.json").read_text())[0]["runs"]
    assert r["sample_depth"] == 16 and r["train_depth"] == 1 and len(r["exact_by_depth"]) == 16
    assert json.loads((tmp_path / "q" / "sudoku6-gram-s0" / "config.json").read_text())["priors"]["rank"] == 2
    assert r["exact"] == r["exact_by_depth"][15] and r["exact_train_depth"] == r["exact_by_depth"][0]
    widths = ("vote_by_width", "value_by_width", "checker_by_width", "any_by_width")
    assert all(set(r[k]) == {"1", "2"} for k in widths)
    assert len({r[k]["1"] for k in widths}) == 1  # one sample: every selector picks it
    assert max(r["vote_by_width"]["2"], r["value_by_width"]["2"]) <= r["any_by_width"]["2"]  # the bound bounds
    assert r["checker_by_width"]["2"] == r["any_by_width"]["2"]  # one solution: a valid board is exact
    assert "value head's pick 1: " in out and "the checker's pick 1: " in out and "any sample exact (bound) 1: " in out
    assert r["seed"] == 0 and r["run"].endswith("sudoku6-gram-s0")
    drawn = run("width_depth.py", "--from-quality", str(tmp_path / "q.json"), "--out", str(tmp_path / "c.png"),
                "--json", str(tmp_path / "c.json"))  # fmt: skip
    (row,) = json.loads((tmp_path / "c.json").read_text())  # drawn from the records, nothing sampled again
    assert row["valid_by_depth"] == r["exact_by_depth"] and row["vote_by_width"] == r["vote_by_width"]
    assert row["run"] == "sudoku6 gram, seed 0 (q)" and "| sudoku6 gram, seed 0 (q) |" in drawn  # q: the --out folder
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_device_check_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device_check.sh")], check=True)


def test_startup_benchmark(tmp_path):
    out = run("startup.py", "--size", "4", "--repeats", "1", "--json", str(tmp_path / "s.json"))
    row = json.loads((tmp_path / "s.json").read_text())
    assert "gram sample (sudoku 4x4" in out and row["sample_median_s"] > 0 and row["imports_median_s"] > 0


def test_width_depth_curves(tmp_path):
    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.run import fit

    cfg = tiny_config()
    cfg = cfg.__class__(task=TaskConfig(name="sudoku", size=4, mode="multi"), net=cfg.net, fit=cfg.fit)
    fit(cfg, tmp_path / "a", steps=2, progress=False, eval_puzzles=4)
    out = run("width_depth.py", str(tmp_path / "a"), "--samples", "4", "--puzzles", "3", "--max-depth", "3",
              "--out", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json"))  # fmt: skip
    rows = json.loads((tmp_path / "c.json").read_text())
    assert "vote@4" in out and "depth 3" in out and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert len(rows[0]["valid_by_depth"]) == 3 and set(rows[0]["vote_by_width"]) == {"1", "2", "4"}
    assert all(0 <= v <= 1 for v in rows[0]["valid_by_depth"])
    bound, value = rows[0]["any_by_width"], rows[0]["value_by_width"]
    assert (
        all(value[n] <= bound[n] for n in bound) and bound["1"] <= bound["2"] <= bound["4"]
    )  # no pick beats the bound
    assert rows[0]["vote_depth"] == 2  # the tiny run's training depth
    checker = rows[0]["checker_by_width"]  # multi-solution inputs, scored by validity: the checker reaches the bound
    assert checker == bound and rows[0]["temperature"] == 1.0 and "the checker's pick" in out
    out = run("width_depth.py", str(tmp_path / "a"), "--samples", "4", "--puzzles", "3", "--max-depth", "3",
              "--temperature", "0", "--json", str(tmp_path / "t.json"))  # fmt: skip
    (cold,) = json.loads((tmp_path / "t.json").read_text())
    assert cold["temperature"] == 0 and "τ = 0" in cold["run"]  # τ = 0: the prior mean, every sample the same
    assert len(set(cold["any_by_width"].values())) == 1 and len(set(cold["vote_by_width"].values())) == 1
    out = run("width_depth.py", str(tmp_path / "a"), "--samples", "4", "--puzzles", "3", "--max-depth", "3",
              "--temperature", "2:0", "--json", str(tmp_path / "s.json"))  # fmt: skip
    (cooling,) = json.loads((tmp_path / "s.json").read_text())  # a schedule over the 3 steps: its ends reported
    assert (cooling["temperature"], cooling["temperature_end"]) == (2.0, 0.0) and "τ = 2 -> 0" in cooling["run"]
    out = run("width_depth.py", str(tmp_path / "a"), "--samples", "1", "--puzzles", "3", "--max-depth", "3",
              "--vote-depth", "3", "--halt", "--json", str(tmp_path / "v.json"))  # fmt: skip
    rows = json.loads((tmp_path / "v.json").read_text())
    assert "vote@1 (depth 3)" in out and rows[0]["vote_depth"] == 3
    halted = rows[0]["halted"]  # --halt: the halt head stops each draw at one of the 3 steps
    assert 1 <= halted["mean_steps"] <= 3 and 0 <= halted["valid"] <= 1 and "with halting (at most 3 steps)" in out
    assert rows[0]["vote_by_width"]["1"] == rows[0]["valid_by_depth"][2]  # one sample: its own validity at depth 3
    one = rows[0]["valid_by_depth"][2]  # one sample after the 3 steps: vote, value pick and bound are its validity
    assert rows[0]["value_by_width"]["1"] == rows[0]["any_by_width"]["1"] == one and "value head's pick" in out
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "width_depth.py"), str(tmp_path / "a"),
                          "--max-depth", "3", "--vote-depth", "4"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and "--vote-depth must be between 1 and --max-depth (3)" in bad.stderr
    none = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "width_depth.py")], capture_output=True, text=True)
    assert none.returncode == 2 and "give run folders, --from-quality files, or both" in none.stderr
    hot = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "width_depth.py"), str(tmp_path / "a"),
                          "--temperature", "-1"], capture_output=True, text=True)  # fmt: skip
    assert hot.returncode == 2 and "argument --temperature: expected a finite number >= 0" in hot.stderr


def test_digits_vae_baseline(tmp_path):
    out = run("digits_vae.py", "--steps", "5", "--samples", "50", "--json", str(tmp_path / "v.json"),
              "--save-samples", str(tmp_path / "s" / "v.npy"))  # fmt: skip
    row = json.loads((tmp_path / "v.json").read_text())
    images = np.load(tmp_path / "s" / "v.npy")
    assert images.shape == (50, 64) and set(np.unique(images)) <= {1, 2}  # digits tokens: 1 off, 2 on
    assert "Pyro VAE" in out and "Fréchet distance" in out
    assert row["batches"] == 5 and row["samples"] == 50 and row["frechet"] > 0 and 0 <= row["recognisable"] <= 1


def test_masked_diffusion_baseline(tmp_path):
    out = run("gen_diffusion.py", "--size", "4", "--steps", "3", "--samples", "20", "--denoise-steps", "4",
              "--json", str(tmp_path / "d.json"), "--save-samples", str(tmp_path / "d.npy"))  # fmt: skip
    row = json.loads((tmp_path / "d.json").read_text())
    boards = np.load(tmp_path / "d.npy")
    assert boards.shape == (20, 16) and boards.min() >= 2 and boards.max() <= 5  # digits 1-4 as tokens 2-5
    assert "masked diffusion, 4x4" in out and "held-out grids generated" in out
    assert row["batches"] == 3 and row["samples"] == 20 and row["held_out"] == 58 and 0 <= row["valid"] <= 1


def test_masked_diffusion_sampling_fills_every_cell_with_a_digit():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from gen_diffusion import sample

    class Uniform(torch.nn.Module):  # a denoiser that knows nothing: sampling must still fill the grid
        def embed(self, x):
            return x.float()[..., None]

        def initial_state(self, batch):
            return torch.zeros(batch, 16, 1), torch.zeros(batch, 16, 1)

        def transition(self, h, l, e):
            return h + e, l

        def decode(self, h):
            return torch.zeros(h.shape[0], 16, 6)

    boards = sample(Uniform(), 30, 16, 1, 5, seed=0)
    assert boards.shape == (30, 16) and ((boards >= 2) & (boards <= 5)).all()


def test_depth_metric_curve(tmp_path):
    import dataclasses

    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.run import fit

    cfg = dataclasses.replace(tiny_config(), task=TaskConfig(name="sudoku", size=4))
    fit(cfg, tmp_path / "gen", steps=1, progress=False, eval_puzzles=4)
    out = run("depth_metric.py", str(tmp_path / "gen"), "--multiples", "1,2", "--samples", "10",
              "--out", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json"))  # fmt: skip
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["depth"] for r in rows] == [2, 4] and "| depth | valid |" in out
    run("depth_metric.py", str(tmp_path / "gen"), "--multiples", "1", "--samples", "10", "--latest")
    run("depth_metric.py", str(tmp_path / "gen"), "--multiples", "1", "--samples", "10", "--temperature", "0",
        "--json", str(tmp_path / "t.json"))  # fmt: skip
    cold = json.loads((tmp_path / "t.json").read_text())[0]
    assert cold["temperature"] == 0 and cold["distinct_valid"] <= 1  # τ = 0: every sample the prior mean's board
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    digits = dataclasses.replace(tiny_config(), task=TaskConfig(name="digits", size=8))
    fit(digits, tmp_path / "dig", steps=1, progress=False, eval_puzzles=4)
    out = run("depth_metric.py", str(tmp_path / "dig"), "--multiples", "1,2", "--samples", "20",
              "--out", str(tmp_path / "d.png"))  # fmt: skip
    assert "| depth | recognisable | frechet |" in out and (tmp_path / "d.png").is_file()


def test_prior_hole_rows(tmp_path):
    import dataclasses

    from gram_ppl.config import TaskConfig
    from gram_ppl.inference.run import fit
    from gram_ppl.models.priors import PRIORS

    for name, size, rank in (("digits", 8, 0), ("sudoku", 4, 0), ("digits", 8, 2)):
        priors = dataclasses.replace(PRIORS, rank=rank)  # a low-rank prior is whitened by its full covariance
        cfg = dataclasses.replace(tiny_config(T=1), task=TaskConfig(name=name, size=size), priors=priors)
        name = f"{name}{rank}"
        fit(cfg, tmp_path / name, steps=1, progress=False, eval_puzzles=4)
        out = run(
            "prior_hole.py",
            str(tmp_path / name),
            "--ranks",
            "4",
            "--mixtures",
            "3,1",
            "--mixture-rank",
            "3",
            "--samples",
            "12",
            "--json",
            str(tmp_path / f"{name}.json"),
        )
        rows = json.loads((tmp_path / f"{name}.json").read_text())
        labels = ["prior", "rank 4", "mixture 1 (rank 3)", "mixture 3 (rank 3)", "aggregate"]
        assert [r["first_step"] for r in rows["rows"]] == labels
        assert all(np.isfinite(r["heldout_loglik"]) for r in rows["rows"] if r["first_step"].startswith("mixture"))
        spectrum = rows["spectrum"]
        assert spectrum == sorted(spectrum, reverse=True) and min(spectrum) >= 0
        assert rows["shift_total"] >= sum(spectrum) - 1e-3 and rows["targets"] == len(fit_targets(tmp_path / name))
        assert ("| first step | recognisable |" if name.startswith("digits") else "| first step | valid |") in out
    run("prior_hole.py", str(tmp_path / name), "--ranks", "4", "--mixtures", "3,1", "--mixture-rank", "3",
        "--samples", "12", "--json", str(tmp_path / "again.json"))  # fmt: skip
    assert json.loads((tmp_path / "again.json").read_text())["rows"] == rows["rows"]  # seeded: a rerun is exact
    two = dataclasses.replace(tiny_config(), task=TaskConfig(name="digits", size=8))  # T = 2: guided twice in step 1
    fit(two, tmp_path / "t2", steps=1, progress=False, eval_puzzles=4)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prior_hole.py"), str(tmp_path / "t2")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0 and "first transition only" in r.stderr


def test_prior_hole_mixture_draws():
    """One component is the rank row's Gaussian (the shifts' coordinates have covariance diag λ);
    more components follow clusters one Gaussian smears."""
    import torch
    from scipy.stats import multivariate_normal

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prior_hole import fit_mixture, mixture_draws, shift_coords, widened_loglik

    from gram_ppl.inference.prior_fit_pyro import Shifts

    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [6.0, 0.0]])  # two clusters along the first direction
    white = centres[rng.integers(2, size=400)] + rng.normal(size=(400, 2))  # (N, 2) whitened shifts
    m = white.mean(0)
    _, s, vt = np.linalg.svd(white - m, full_matrices=False)
    t = torch.from_numpy
    sh = Shifts(torch.zeros(1, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64),
                t(white).reshape(400, 1, 2), torch.ones(400, 1, 2, dtype=torch.float64), t(m), t(vt), t(s**2 / 400))  # fmt: skip
    coords = shift_coords(sh, sh.mu_q, 2)  # (N, 2)
    fits = {c: fit_mixture(coords, 2, seed=0, covariance=c) for c in ("full", "tied")}
    fits["one"] = fit_mixture(coords, 1, seed=0)
    one, two, tied = (mixture_draws(fits[c], 20000, seed=0) for c in ("one", "full", "tied"))  # (M, 2) each
    np.testing.assert_allclose(np.cov(one.T, bias=True), np.diag(s**2 / 400), atol=0.6)
    assert one.shape == two.shape == tied.shape == (20000, 2)
    near_two, near_tied, near_one = ((np.abs(np.abs(d[:, 0]) - 6) < 2).mean() for d in (two, tied, one))
    assert near_two > 0.9 and near_tied > 0.9  # drawn near a cluster
    assert near_one < 0.6  # one Gaussian fills the gap between the clusters
    held = (centres[rng.integers(2, size=400)] + rng.normal(size=(400, 2)) - m) @ vt.T  # new points, same law
    scores = {c: widened_loglik(g, held) for c, g in fits.items()}
    assert scores["full"] > scores["one"] and scores["tied"] > scores["one"]  # two clusters beat one Gaussian
    g = fits["one"]
    want = multivariate_normal(g.means_[0], g.covariances_[0] + np.eye(2)).logpdf(held).mean()
    assert scores["one"] == pytest.approx(want)  # one component: a Gaussian widened by I


def fit_targets(folder):
    from gram_ppl.inference.api import load_run

    return load_run(folder).data.train.y
