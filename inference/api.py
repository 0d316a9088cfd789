"""The Python API in a few calls, exported by `gram_ppl` (with `diagnose`, from
inference/diagnose.py): fit, load_run, sample, evaluate, compare, to_inference_data. Wherever a `run` is asked for, a run folder, a `LoadedRun`
(`load_run`) or a `FitResult` (`fit`) will do.

    import gram_ppl as gp
    result = gp.fit(cfg, "runs/r", steps=200)             # SVI into a run folder
    s = gp.sample(result, x, num_samples=20)              # prior samples: s.boards, s.valid
    gp.evaluate("runs/r")["coverage"]                     # held-out inputs, exact ground truth
    print(gp.compare({"a": ["runs/r0", "runs/r1"], "b": "runs/s"}, elpd=32))  # arms of seeds, as `gram compare`
    idata = gp.to_inference_data("runs/r")                # ArviZ InferenceData (docs/diagnostics.md)
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gram_ppl.config import config_differences, sample_depth
from gram_ppl.inference.backend import NonFiniteLoss
from gram_ppl.inference.evaluate import describe_generation, evaluate_run, generation_report
from gram_ppl.inference.loading import LoadedRun, convert_loaded, convert_run, load_run
from gram_ppl.inference.parallel import from_env
from gram_ppl.inference.run import FitResult, fit
from gram_ppl.inference.runfolder import check_fits, check_report_folder, load_config, model_file_note
from gram_ppl.inference.sampling import generate, rollout, sample_puzzles
from gram_ppl.seeds import part

__all__ = ["Samples", "as_run", "compare", "evaluate", "fit", "load_run", "sample", "to_inference_data",
           # what the command line uses besides (gram_ppl/cli imports the library through this module only)
           "NonFiniteLoss", "check_fits", "check_report_folder", "convert_run", "describe_generation", "diagnose",
           "evaluate_run", "from_env", "generate", "generation_report", "load_config", "model_file_note",
           "refit_prior", "sample_puzzles"]  # fmt: skip


def refit_prior(*args, **kwargs):
    """inference/prior_fit_pyro.py's `refit_prior` (imported on first use: it needs torch)."""
    from gram_ppl.inference.prior_fit_pyro import refit_prior as impl

    return impl(*args, **kwargs)


def diagnose(*args, **kwargs):
    """inference/diagnose.py's `diagnose` (imported on first use: it brings matplotlib and ArviZ)."""
    from gram_ppl.inference.diagnose import diagnose as run_diagnose

    return run_diagnose(*args, **kwargs)


class Samples(NamedTuple):
    boards: np.ndarray  # (N, B, L_y) decoded boards of N prior trajectories per puzzle
    valid: np.ndarray  # (N, B) bool: the board satisfies every constraint and keeps the givens
    per_step: np.ndarray  # (S, N, B, L_y) the boards after each supervision step
    halt_step: np.ndarray  # (N, B) supervision steps used
    value: np.ndarray  # (N, B) LPRM value of the returned board


def as_run(run) -> LoadedRun:
    """A LoadedRun from a run folder, a LoadedRun or a FitResult."""
    if isinstance(run, LoadedRun):
        return run
    if isinstance(run, FitResult):
        return LoadedRun(run.config, run.net, run.trainer.mod, best=run.best)
    if isinstance(run, str | Path):
        return load_run(run)
    raise TypeError(f"expected a run folder, a LoadedRun or a FitResult, got {type(run).__name__}")


def sample(
    run, x, num_samples: int = 20, *, depth: int | None = None, halt: bool = False, temperature: float | tuple[float, float] | None = None,
    seed: int = 0,
) -> Samples:  # fmt: skip
    """N prior trajectories p_θ(τ | x) for each puzzle x (B, L_x) (or one puzzle (L_x,)):
    decoded boards and their validity. `temperature` scales the prior's σ (0: the prior mean; a
    pair (start, end): τ moving linearly over the steps; None: the run's, config.temperature_schedule)."""
    run = as_run(run)
    x = np.asarray(x)
    x = x[None] if x.ndim == 1 else x  # (B, L_x)
    for p in x:
        run.task.check_givens(p)
    r = rollout(
        run.mod, run.net, run.config, x, num_samples, depth or sample_depth(run.config), halt, temperature, seed
    )
    return Samples(r.boards, run.task.is_valid(x[None], r.boards), r.per_step, r.halt_step, r.value)


def evaluate(run, num_samples: int = 20, *, puzzles: int | None = None, depth: int | None = None,
             temperature: float | tuple[float, float] | None = None) -> dict:  # fmt: skip
    """Prior samples of the run's held-out inputs scored against exact ground truth (the
    `gram evaluate` metrics: valid, any_valid, coverage, distinct_valid, by depth and by the
    inputs' numbers of solutions)."""
    with _work("evaluate", 1) as bar:
        out = evaluate_run(as_run(run), num_samples=num_samples, depth=depth, puzzles=puzzles, temperature=temperature)
        bar.update()
    return out


@contextlib.contextmanager
def _work(what: str, units: int):
    """A progress bar on stderr that shows only when the work takes more than 2 seconds, redrawn
    at most once a second (evaluate, compare and the ArviZ export can take minutes)."""
    from tqdm import tqdm

    bar = tqdm(total=units, desc=what, delay=2.0, mininterval=1.0, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def compare(runs, num_samples: int = 20, *, puzzles: int | None = None, elpd: int = 0,
            temperature: float | tuple[float, float] | None = None) -> str:  # fmt: skip
    """Arms side by side on their held-out puzzles, as `gram compare` prints them: a markdown table
    of validity and coverage@N from prior samples and, with elpd=K, held-out log p(y | x)
    (importance-weighted over K prior trajectories per puzzle) ranked as az.compare ranks models.
    `runs`: a dict arm -> run or arm -> list of runs (fits of one model with different seeds), or
    a list of runs (one arm each). Each metric is the mean over an arm's seeds ± its standard error,
    and the elpd's standard errors include the seed-to-seed spread (inference/evaluate.elpd_table);
    an arm of one seed says so. The runs of an arm must differ in the seed alone."""
    from gram_ppl.inference.evaluate import comparison_table, elpd_table, heldout_elpd

    named = list(runs.items()) if isinstance(runs, dict) else [(str(r), r) for r in runs]
    if not named:
        raise ValueError("compare needs at least one run")
    arms = [(name, _arm(name, r)) for name, r in named]
    if elpd and len({name for name, _ in arms}) < len(arms):
        raise ValueError("compare --elpd needs distinct runs (a run listed twice has no difference to score)")
    runs_in_all = sum(len(fits) for _, fits in arms) * (2 if elpd else 1)
    with _work("compare (runs scored)", runs_in_all) as bar:

        def scored(fn, r):
            out = fn(r)
            bar.update()
            return out

        def metrics(r):
            return evaluate_run(r, num_samples=num_samples, puzzles=puzzles, temperature=temperature)

        rows = [(name, fits[0].config.fit.variant, [scored(metrics, r) for r in fits]) for name, fits in arms]
        table = comparison_table(rows, num_samples)
        if elpd:
            score = functools.partial(heldout_elpd, num_samples=elpd, puzzles=puzzles)
            table += "\n\n" + elpd_table({name: [scored(score, r) for r in fits] for name, fits in arms}, elpd)
    return table


def _arm(name: str, runs) -> list[LoadedRun]:
    """The loaded runs of one arm: one run, or several fits of the same model (configs that differ
    in the seed alone, each seed once)."""
    fits = [as_run(r) for r in (runs if isinstance(runs, list) or type(runs) is tuple else [runs])]
    if not fits:
        raise ValueError(f"arm {name!r} has no runs")
    for other in fits[1:]:
        diff = config_differences(fits[0].config, other.config)
        if diff:
            raise ValueError(f"arm {name!r}: its runs differ in {', '.join(diff)}, not only in the seed "
                             "(an arm holds fits of one model; make another arm for another config)")  # fmt: skip
    seeds = [f.config.fit.seed for f in fits]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"arm {name!r}: seed {max(seeds, key=seeds.count)} appears twice (seeds must differ)")
    return fits


def to_inference_data(
    run, x=None, solutions: list[np.ndarray] | None = None, *, num_puzzles: int = 8, num_samples: int = 64,
    depth: int | None = None, latents: bool = False, seed: int = 0,
):  # fmt: skip
    """One call from a run to `arviz.InferenceData` (docs/diagnostics.md): guide draws
    q(τ | x, y) as the posterior, prior draws p(τ | x) as the prior, their boards in the
    predictive groups, the reference solution as observed data. Puzzles: x (B, L_x), or the
    run's first `num_puzzles` held-out ones; their exact solution sets are computed when not
    given (the first is the reference y). Trajectories are read off Pyro traces (a NumPyro run
    is converted in memory)."""
    from gram_ppl.diagnostics import to_inference_data as export
    from gram_ppl.inference.diagnose import run_attrs
    from gram_ppl.inference.trajectories import collect

    folder = run if isinstance(run, str | Path) else getattr(run, "folder", None)
    run = as_run(run)
    trained_with = run.config.backend
    if run.config.backend != "pyro":
        run = convert_loaded(run, "pyro")
    task, cfg = run.task, run.config
    x = run.data.test.x[:num_puzzles] if x is None else np.asarray(x)
    x = x[None] if x.ndim == 1 else x
    solutions = [task.solutions(p) for p in x] if solutions is None else solutions
    if len(solutions) != len(x) or any(len(s) == 0 for s in solutions):
        raise ValueError("every puzzle needs at least one solution (the reference y)")
    y = np.stack([s[0] for s in solutions])  # (B, L_y)
    kw = dict(num_samples=num_samples, depth=depth, latents=latents)
    with _work("to_inference_data (guide, prior draws)", 2) as bar:
        guide = collect(run.mod, run.net, cfg, task, x, y, source="guide", seed=part(seed, "guide"), **kw)
        bar.update()
        prior = collect(run.mod, run.net, cfg, task, x, y, source="prior", seed=part(seed, "prior"), **kw)
        bar.update()
    attrs = run_attrs(folder, cfg, seed, guide.depth, trained_with)
    return export(x, y, posterior=guide, prior=prior, task=task, solutions=solutions, attrs=attrs)
