"""`gram diagnose`: a report folder on the posterior over latent trajectories of a trained run.

Writes trajectories.nc (ArviZ InferenceData, reload with `az.from_netcdf`), PNG plots and a
summary.md that links them and tabulates, per puzzle, the PSIS k̂ of the guide, the effective
sample size, the importance-weighted log p(y | x), and validity, distinct solutions and
coverage of prior samples. Nothing is written outside `out`; a finished report is replaced only
with `force`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from gram_ppl import __version__, plots
from gram_ppl.config import PriorConfig, describe_priors, from_dict, sample_depth, to_dict
from gram_ppl.diagnostics import (
    concat_fits,
    import_arviz,
    prior_check_table,
    psis,
    rhat_across_fits,
    to_inference_data,
)
from gram_ppl.inference.evaluate import sample_metrics
from gram_ppl.inference.run import RunError, load_run
from gram_ppl.inference.runfolder import check_fits, check_report_folder, load_config, read_history
from gram_ppl.inference.trajectories import collect, prior_predictive
from gram_ppl.seeds import part, seed_for

FIGURES = {
    "gallery.png": "distinct boards sampled from the prior for the shown puzzle, valid and invalid in their "
    "proportion among the samples, conflicting cells marked",
    "solutions.png": "how often each exact solution of the shown puzzle was sampled from the prior, against the "
    "uniform share",
    "coverage.png": "coverage against the number of samples and validity against depth",
    "fan.png": "trajectory fan of the shown puzzle: h per step on the principal axes of the final states, coloured "
    "by final solution (digits: by the class a digit classifier gives), and the step where the solutions split",
    "commit.png": "the step from which each prior draw's decoded board stays the same, and validity and cell "
    "entropy of the decoded boards per step",
    "entropy.png": "per-cell entropy of the prior samples over steps, the shown puzzle",
    "hamming.png": "pairwise Hamming distances between samples of the shown puzzle, prior and guide, against the "
    "distances between its exact solutions",
    "traces.png": "training traces: loss with its running mean, learning rate, KL per supervision step, held-out "
    "validity with 95% intervals and the log p(y | x) bound",
    "khat.png": "PSIS k̂ of the guide per puzzle against the sample-size-aware threshold",
}


def diagnose(
    folder: str | Path,
    out: str | Path,
    x: np.ndarray | None = None,
    solutions: list[np.ndarray] | None = None,
    *,
    num_puzzles: int = 8,
    num_samples: int = 64,
    depth: int | None = None,
    latents: bool = False,
    baseline: str | Path | None = None,
    force: bool = False,
    fits: list[str | Path] = (),
    mixed: bool = False,
    puzzle: int | None = None,
) -> dict:
    """Report on `folder`'s run for puzzles x (B, L_x) with their exact solution sets (the first
    one is the reference y for the guide), or the first `num_puzzles` held-out puzzles. `fits`:
    further independent fits of the same model (configs that differ in the seed alone; `mixed`
    allows other differences), for R-hat across fits. `puzzle`: the index of the puzzle whose
    trajectories the per-puzzle figures show (default `pick_puzzle`: one with several solutions
    that the prior draws reach)."""
    check_report_folder(out, force)
    run = load_run(folder, as_backend="pyro")  # trajectories are read off Pyro traces
    cfg, task = run.config, run.data.task
    if baseline is not None and not task.checker:
        raise RunError(f"{task.name} has no exact solutions, and a baseline is drawn on coverage curves against them")
    x, y, counts, solutions = _puzzles(run, x, solutions, num_puzzles)
    depth = depth or sample_depth(cfg)
    seed = seed_for(cfg, "diagnose")
    kw = dict(num_samples=num_samples, depth=depth, latents=latents)
    guide = collect(run.mod, run.net, cfg, task, x, y, source="guide", seed=part(seed, "guide"), **kw)
    prior = collect(run.mod, run.net, cfg, task, x, y, source="prior", seed=part(seed, "prior"), **kw)
    untrained = prior_predictive(cfg, task, x, min(num_samples, 32), depth, mod=run.mod, seed=part(seed, "untrained"))
    attrs = run_attrs(folder, cfg, seed, depth, load_config(folder).backend)
    idata = to_inference_data(x, y, posterior=guide, prior=prior, task=task, solutions=solutions, attrs=attrs)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".trajectories.nc.tmp"  # written aside, then renamed: a report open elsewhere is not truncated
    idata.to_netcdf(str(tmp))
    tmp.replace(out / "trajectories.nc")

    i = pick_puzzle(task, x, prior, solutions) if puzzle is None else puzzle
    if not 0 <= i < len(x):
        raise RunError(f"puzzle {i} is not among the {len(x)} diagnosed puzzles (0..{len(x) - 1})")
    metrics, keys, curves = _curves(run, folder, baseline, x, y, counts, prior, num_samples, depth, seed, i)

    rhat = _rhat(fits, folder, cfg, task, x, y, prior, num_samples, depth, seed, mixed) if fits else None
    deterministic = bool(np.ptp(guide.log_weight, axis=0).max() < 1e-9)
    ps = None if deterministic or cfg.fit.variant == "mean_only" else psis(guide.log_weight)
    figs = _figures(task, x, solutions, guide, prior, keys, curves, ps, read_history(folder), i)
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=90)
    summary = _summary(task, idata, guide, prior, untrained, ps, metrics, counts, figs, folder, num_samples, depth, i)
    if rhat is not None:
        summary += _rhat_section(rhat, [folder, *fits])
    (out / "summary.md").write_text(summary)
    return {
        "metrics": metrics,
        "headline": _prior_line(task, metrics, guide, num_samples),
        "khat": None if ps is None else ps.khat.tolist(),
        "files": sorted(figs),
        "puzzle": i,
        "rhat": None if rhat is None else {k: v.tolist() for k, v in rhat.items()},
    }


def run_attrs(folder, cfg, seed: int, depth: int, backend: str | None = None) -> dict:
    """What an exported InferenceData records about the run it came from: the folder, the backend
    it was trained with (`backend`, where the draws come from a converted copy), the priors, the
    whole config and its hash, the seed and depth of the draws, the package versions."""
    config = to_dict(cfg)
    return {
        "run": str(folder) if folder is not None else "",
        "variant": cfg.fit.variant,
        "backend": backend or cfg.backend,
        "priors": to_dict(cfg.priors),
        "config": config,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "seed": seed,
        "depth": depth,
        "versions": _versions(),
        "log_weight": "log p(y, tau | x) - log q(tau | x, y), y observed after the last step",
    }


def pick_puzzle(task, x, prior, solutions) -> int:
    """The puzzle the per-puzzle figures show by default: the one whose prior draws reach the most
    distinct exact solutions (ties: more solutions, then more valid draws, then the first), so the
    fan has several solutions to split into; puzzle 0 for a task without exact solutions."""
    if not task.checker or solutions is None:
        return 0

    def score(b):
        final = prior.board[:, b, -1]
        ok = prior.valid[:, b]
        reached = len({task.canonical(v).tobytes() for v, good in zip(final, ok, strict=True) if good})
        return reached, len(solutions[b]), int(ok.sum()), -b

    return max(range(len(x)), key=score)


def _curves(run, folder, baseline, x, y, counts, prior, num_samples, depth, seed, i=0):
    """The prior draws' metrics, the solution key of each of puzzle i's draws (the fan's colours;
    None: invalid) and the coverage curves of the run and of `baseline` (drawn the same way)."""
    cfg, task = run.config, run.data.task
    if not task.checker:
        return (*_image_metrics(run.data, x, prior.board, i), {})
    metrics = _metrics(task, x, y, counts, prior.board)
    keys = plots.solution_keys(task, x[i], prior.board[:, i, -1])
    curves = {f"{cfg.fit.variant} ({Path(folder).name})": metrics}
    if baseline is not None:
        base = load_run(baseline, as_backend="pyro")
        if base.config.task != cfg.task:
            raise RunError(f"{baseline}: trained on another task than {folder}")
        b = collect(base.mod, base.net, base.config, task, x, y, num_samples, depth, "prior", seed=part(seed, "prior"))
        curves[f"{base.config.fit.variant} ({Path(baseline).name})"] = _metrics(task, x, y, counts, b.board)
    return metrics, keys, curves


def _puzzles(run, x, solutions, num_puzzles):
    """(x, y, counts, solution sets) to diagnose: the given puzzles with their exact solutions
    (the first one the reference y), or the first `num_puzzles` held-out puzzles."""
    task = run.data.task
    if x is None:
        test = run.data.test.rows(slice(num_puzzles))
        x, y, counts = test.x, test.y, test.num_solutions
    else:
        if solutions is None or len(solutions) != len(x):
            raise ValueError("give the exact solutions of every puzzle")
        y, counts = np.stack([s[0] for s in solutions]), np.array([len(s) for s in solutions])
    if solutions is None and task.checker:
        solutions = [task.solutions(p) for p in x]  # a task without a checker (digits) has no solution set
    if len(x) == 0:
        raise ValueError("no puzzles to diagnose")
    return x, y, counts, solutions


def _figures(task, x, solutions, guide, prior, keys, curves, ps, history, i=0) -> dict:
    """The report's figures by file name (puzzle i's trajectories; curves over all puzzles)."""
    final = prior.board[:, i, -1]
    per_step_valid = np.stack([task.is_valid(x[i][None], prior.board[:, i, s]) for s in range(prior.board.shape[2])], 1)
    figs = {
        "gallery.png": plots.hypothesis_gallery(task, x[i], final),
        "fan.png": plots.trajectory_fan(
            prior.h_pca[:, i], keys, f"puzzle {i}: prior trajectories of h", named=not task.checker
        ),  # fmt: skip
        "commit.png": plots.commit_plot(prior.board[:, i], per_step_valid, task.y_vocab, f"puzzle {i}: commit step"),
        "entropy.png": plots.entropy_heatmap(prior.board[:, i], task.y_vocab, task.board_shape),
        "hamming.png": plots.hamming_histogram(
            None, {"prior": final, "guide": guide.board[:, i, -1]}, solutions[i] if solutions is not None else None
        ),  # fmt: skip
        "traces.png": plots.training_traces(history),
    }
    if task.checker:  # against the exact solution sets
        figs["solutions.png"] = plots.solution_coverage(task, x[i], final, solutions[i])
        figs["coverage.png"] = plots.coverage_and_depth(curves)
    if ps is not None:
        figs["khat.png"] = plots.khat_plot(ps.khat, ps.threshold)
    return figs


def _rhat(fits, folder, cfg, task, x, y, prior, num_samples, depth, seed, mixed=False) -> dict:
    """R-hat across this run and `fits` (each a chain), on the prior draws' identifiable quantities."""
    check_fits(folder, fits, mixed)
    chains = [to_inference_data(x, y, prior=prior, task=task)]
    for other in fits:
        run = load_run(other, as_backend="pyro")
        t = collect(run.mod, run.net, run.config, task, x, y, num_samples, depth, "prior", seed=part(seed, "prior"))
        chains.append(to_inference_data(x, y, prior=t, task=task))
    return rhat_across_fits(concat_fits(chains))


def _rhat_section(rhat: dict, runs: list) -> str:
    lines = ["", f"## R-hat across {len(runs)} fits ({', '.join(str(r) for r in runs)})", "",
             "Each fit is a chain; per puzzle, on the prior draws' validity, agreement with the reference "
             "board and log p(y | τ) (identifiable quantities only; latent coordinates are not: rotation). "
             "Above 1.01 the fits disagree about that puzzle; nan where every draw of every fit is the same.", "",
             "| quantity | " + " | ".join(f"puzzle {b}" for b in range(len(next(iter(rhat.values()))))) + " |",
             "|---|" + "---|" * len(next(iter(rhat.values())))]  # fmt: skip
    for name, values in rhat.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def _metrics(task, x, y, counts, board) -> dict:
    """Paper metrics of the final boards (N, B, S+1, L_y), and single-sample validity per step."""
    metrics = sample_metrics(task, x, y, board[:, :, -1], counts)
    metrics["valid_by_depth"] = [float(task.is_valid(x[None], board[:, :, s]).mean()) for s in range(1, board.shape[2])]
    return metrics


def _prior_line(task, metrics, guide, N) -> str:
    if not task.checker:  # images (digits): the judge's scores
        from gram_ppl.tasks.digits import describe

        return f"Prior samples (no checker; judged by a classifier on held-out real digits): {describe(metrics)}."
    return (f"Prior samples: {metrics['valid']:.1%} valid, {metrics['any_valid']:.1%} of puzzles solved,"
            f" coverage@{N} {metrics['coverage']:.1%}; guide samples: {guide.valid.mean():.1%} valid.")  # fmt: skip


def _image_metrics(data, x, board, i=0) -> tuple[dict, list[str]]:
    """A task without a checker (digits): the judge's scores of the prior's final images (N, B,
    S+1, L_y) (gram_ppl.tasks.digits.image_metrics), and the class it gives each image of
    puzzle i (what the trajectory fan colours by)."""
    from gram_ppl.tasks.digits import image_metrics, judge_for

    final, judge = board[:, :, -1], judge_for(data.train.y)  # (N, B, L_y)
    metrics = image_metrics(final, data.train.y, judge, data.task.sample_labels(x, final.shape[:2]))
    return metrics, [f"digit {c}" for c in judge.proba(final[:, i]).argmax(-1)]  # (N,)


def _versions() -> dict:
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"gram_ppl": __version__, "python": platform.python_version(),
            **{name: version(name) for name in ("torch", "pyro-ppl", "numpyro", "jax", "arviz", "numpy")}}  # fmt: skip


def _priors_line(priors_json) -> str:
    """The PRIORS block the run was trained with, in words."""
    import json

    p = json.loads(priors_json) if isinstance(priors_json, str) else priors_json
    return f"Priors: transition noise {describe_priors(from_dict(PriorConfig, p))}."


def _summary(task, idata, guide, prior, untrained, ps, metrics, counts, figs, folder, N, depth, i=0) -> str:
    az = import_arviz()
    ok = "valid" if task.checker else "well-formed"  # images: no checker, every image is well formed
    lines = [
        f"# Diagnostics of {folder}",
        "",
        f"{len(counts)} puzzles, {N} trajectories each from the guide q(τ | x, y) and from the prior",
        f"p(τ | x), {depth} supervision steps. Data: [trajectories.nc](trajectories.nc)",
        "(`arviz.from_netcdf`; groups " + ", ".join(idata.groups()) + ").",
        "",
        _prior_line(task, metrics, guide, N),
        "",
        _priors_line(idata.attrs.get("priors")),
        "",
        f"| puzzle | solutions | k̂ | ESS | log p(y given x) | guide {ok} | prior {ok} | distinct {ok} (prior) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in range(len(counts)):
        k = "-" if ps is None else f"{ps.khat[b]:.2f}"
        ess = "-" if ps is None else f"{ps.ess[b]:.1f}"
        lm = "-" if ps is None else f"{ps.log_marginal[b]:.2f}"
        distinct = len({prior.board[i, b, -1].tobytes() for i in range(N) if prior.valid[i, b]})
        lines.append(
            f"| {b} | {counts[b] if counts[b] >= 0 else '-'} | {k} | {ess} | {lm} | {guide.valid[:, b].mean():.0%} | "
            f"{prior.valid[:, b].mean():.0%} | {distinct} |"
        )
    if ps is None:
        lines += [
            "",
            "PSIS is not defined here: the importance weights are constant (deterministic) or the noise is a point mass (mean_only).",
        ]
    else:
        bad = int((ps.khat > ps.threshold).sum())
        lines += [
            "",
            f"k̂ threshold for {N} draws: {ps.threshold:.2f} (min(1 − 1/log10 S, 0.7)); {bad} of {len(counts)}"
            " puzzles above it, where the guide is not a reliable importance proposal for the posterior.",
        ]
    lines += [
        "",
        "## Prior predictive check (untrained network, PRIORS block)",
        "",
        "| step | mean σ | RMS of h | distinct boards / draws |",
        "|---|---|---|---|",
    ]
    for r in prior_check_table(untrained):
        lines.append(f"| {r['step']} | {r['sigma']:.3f} | {r['h_rms']:.3f} | {r['distinct_boards']:.2f} |")
    stats = az.summary(idata, kind="stats")
    lines += [
        "",
        "## Posterior summaries (`az.summary(idata, kind='stats')`: RMS of h after the last step per puzzle)",
        "",
        "```\n" + stats.to_string() + "\n```",
    ]
    lines += ["", f"## Figures (per-puzzle figures: puzzle {i})", ""]
    for name in figs:
        lines += [f"- {FIGURES[name]}: ![{name}]({name})"]
    return "\n".join(lines) + "\n"
