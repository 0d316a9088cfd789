"""Metrics of sampled solutions against exact ground truth."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from gram_ppl.config import sample_depth, temperature_record
from gram_ppl.seeds import part, seed_for
from gram_ppl.tasks import Split, Task


def sample_metrics(
    task: Task, x: np.ndarray, target: np.ndarray, samples: np.ndarray, num_solutions: np.ndarray
) -> dict[str, float | list[float]]:
    """Paper metrics (§7) of N samples per puzzle against exact ground truth.

    x (B, L_x) puzzles, target (B, L_y) stored targets, samples (N, B, L_y), num_solutions (B,).
    - valid: share of single samples satisfying every constraint and the givens (the paper's
      accuracy); exact: share equal to the stored target (one of possibly many solutions);
    - any_valid: puzzles with at least one valid sample; distinct_valid: distinct valid
      solutions per puzzle; coverage: distinct valid / number of solutions (colourings compared
      up to colour names), and coverage_curve[k-1] the same with the first k samples;
    - conflicts_mean / conflicts_sum: violated constraints of the first sample, per puzzle and
      summed over the puzzles (the paper's colouring "conflict edges");
    - tv_uniform: mean over puzzles with a valid sample of the total-variation distance between
      the valid samples' distribution and the uniform distribution on the puzzle's solutions.
    """
    N, B = samples.shape[:2]
    valid = task.is_valid(x[None], samples)  # (N, B)
    keys = [[task.canonical(samples[i, b]).tobytes() for i in range(N)] for b in range(B)]
    curve = [np.mean([len({k for k, v in zip(keys[b][:n], valid[:n, b], strict=True) if v}) / max(num_solutions[b], 1)
                      for b in range(B)]) for n in range(1, N + 1)]  # fmt: skip
    distinct = np.array([len({k for k, v in zip(keys[b], valid[:, b], strict=True) if v}) for b in range(B)])
    conflicts = task.conflicts(x, samples[0])  # (B,)
    tvs = [
        _tv_to_uniform([k for k, v in zip(keys[b], valid[:, b], strict=True) if v], num_solutions[b]) for b in range(B)
    ]
    tvs = [t for t in tvs if t is not None]
    return {
        "valid": float(valid.mean()),
        "exact": float((samples == target[None]).all(-1).mean()),
        "any_valid": float(valid.any(0).mean()),
        "distinct_valid": float(distinct.mean()),
        "coverage": float(curve[-1]),
        "coverage_curve": [round(float(c), 6) for c in curve],
        "conflicts_mean": float(conflicts.mean()),
        "conflicts_sum": int(conflicts.sum()),
        "tv_uniform": float(np.mean(tvs)) if tvs else float("nan"),
        "tv_puzzles": len(tvs),
    }


def _tv_to_uniform(valid_keys: list[bytes], num_solutions: int) -> float | None:
    """TV between the empirical distribution of valid samples and uniform over the solutions."""
    if not valid_keys or num_solutions < 1:
        return None
    counts = np.array(list(Counter(valid_keys).values()), dtype=float) / len(valid_keys)
    unseen = num_solutions - len(counts)
    return 0.5 * (np.abs(counts - 1 / num_solutions).sum() + unseen / num_solutions)


def _one_input(x: np.ndarray) -> bool:
    """Whether the inputs x (B, L_x) are one input repeated (generation: the blank board)."""
    return len(x) > 1 and bool((x == x[:1]).all())


def prior_draws(test: Split, puzzles: int) -> int:
    """How many prior draws an evaluation of `puzzles` held-out inputs makes: `puzzles` where every
    input is the same (generation from the blank board: 4x4 grids hold out only 58, and a share of
    58 draws says little about coverage), else one per input evaluated."""
    x = test.x[:puzzles]
    return puzzles if _one_input(x) else len(x)


def validity_report(task: Task, test: Split, puzzles: int, draw, guided: bool, log_lik=None) -> dict[str, float]:
    """Validity of one prior sample and (when `guided`) one guide sample for each of the first
    `puzzles` held out; `draw(x, y)` returns one board per puzzle (B, L_y) as numpy, from the
    prior when y is None and through the guide otherwise (each backend's trainer supplies it).
    With `log_lik(x, y)` ((K, B) log p(y | τ_k, x) of K prior trajectories), also the held-out
    importance-weighted bound `heldout_log_p` (`iw_bound`). Where every input is the same
    (generation: the blank board) the prior draws `puzzles` boards from it, however few inputs
    are held out (`prior_draws`), and the report has `prior_distinct_valid`, the distinct valid
    boards among them as a share of the draws: a prior collapsing onto a few boards shows there
    while its validity looks fine."""
    x, y = test.x[:puzzles], test.y[:puzzles]
    blank = _one_input(x)
    xp = np.repeat(x[:1], puzzles, 0) if blank else x  # (B', L_x): prior_draws(test, puzzles) rows
    prior = draw(xp, None)  # (B', L_y)
    valid = task.is_valid(xp, prior)  # (B',)
    report = {"prior_valid": float(valid.mean())}
    if blank:
        report["prior_distinct_valid"] = len({b.tobytes() for b in prior[valid]}) / len(xp)
    if guided:
        report["guide_valid"] = float(task.is_valid(x, draw(x, y)).mean())
    if log_lik is not None:
        report["heldout_log_p"] = float(iw_bound(log_lik(x, y)).mean())
    return report


def held_out_validity(backend, trainer, task: Task, test: Split, puzzles: int, seed: int) -> dict[str, float]:
    """`validity_report` for a trainer of either backend (the module `backend`: its `sample` and
    `log_likelihood`), from its sampling networks: one prior draw (stream `seed`), one guide draw
    and 8 prior trajectories for the bound (its sub-streams); the training RNG is untouched."""
    net, mod, cfg = trainer.sampling_net(), trainer.mod, trainer.cfg

    def draw(x, y):
        return backend.sample(mod, net, cfg, x, y, seed=seed if y is None else part(seed, "guide"))[0]  # (B, L_y)

    def log_lik(x, y):
        return backend.log_likelihood(mod, net, cfg, x, y, num_samples=8, seed=part(seed, "likelihood"))  # (8, B)

    return validity_report(task, test, puzzles, draw, cfg.fit.variant != "deterministic", log_lik)


def iw_bound(log_lik: np.ndarray) -> np.ndarray:
    """log (1/K) Σ_k p(y | τ_k, x) per puzzle from (K, B) log-likelihoods of K prior trajectories:
    the importance-weighted estimate of log p(y | x) with the prior as proposal, a lower bound
    in expectation that tightens as K grows (nats per puzzle; y one reference solution, so for
    an input with n equally likely solutions the best possible value is about −ln n)."""
    log_lik = np.asarray(log_lik, dtype=np.float64)
    m = log_lik.max(0)
    return m + np.log(np.exp(log_lik - m).mean(0))


def heldout_elpd(run, num_samples: int, puzzles: int | None = None, seed: int | None = None) -> np.ndarray:
    """Per held-out puzzle (B,), the importance-weighted estimate of log p(y | x) from
    `num_samples` prior trajectories (`iw_bound`; y the stored reference solution). Runs on the
    same task and data seed score the same puzzles, so their differences pair up."""
    from gram_ppl.inference.backend import get_backend
    from gram_ppl.inference.loading import LoadedRun, load_run

    run = run if isinstance(run, LoadedRun) else load_run(run)
    test, cfg = run.data.test, run.config
    x, y = test.x[:puzzles], test.y[:puzzles]
    from gram_ppl.inference.sampling import chunk_seeds

    seed = seed_for(cfg, "elpd") if seed is None else seed
    backend = get_backend(cfg.backend)
    chunks = chunk_seeds(cfg, run.task, num_samples, len(x), seed)  # (K, B) log-likelihoods are small; h is not
    log_lik = [backend.log_likelihood(run.mod, run.net, cfg, x, y, n, seed=s) for n, s in chunks]
    return iw_bound(np.concatenate(log_lik))


def elpd_table(scores: dict[str, list[np.ndarray]], num_samples: int) -> str:
    """A markdown table in az.compare's shape: arms ranked by summed held-out log p(y | x), each arm
    one run or several fits of the same model (seeds), scored on the same B puzzles.

    Per arm, ē(i) is the mean over its k seeds of puzzle i's score and T_s each seed's total; the
    arm's elpd is Σ_i ē(i). Its standard error adds two variance components: the puzzles',
    B·var_i(ē(i)), and the seeds', var_s(T_s)/k (k ≥ 2; with one seed it is unknown and left out,
    the row says so). A difference to the best arm has dse² = B·var_i(ē_best(i) − ē(i)) + the seed
    components of both arms (a two-way random-effects approximation: puzzles and seeds independent,
    no interaction). A single array per arm is one seed."""
    scores = {k: [v] if isinstance(v, np.ndarray) else list(v) for k, v in scores.items()}
    sizes = {len(r) for runs in scores.values() for r in runs}
    if len(sizes) != 1:
        raise ValueError("the runs were scored on different numbers of puzzles (another task or data set?)")
    mean = {k: np.mean(runs, axis=0) for k, runs in scores.items()}  # (B,) ē per arm

    def seed_var(runs):  # the seed component of the variance of an arm's total, 0 with one seed
        return float(np.var([r.sum() for r in runs], ddof=1) / len(runs)) if len(runs) > 1 else 0.0

    ranked = sorted(mean, key=lambda k: -mean[k].sum())
    best = ranked[0]
    B = sizes.pop()
    lines = [
        f"held-out log p(y | x), importance-weighted over {num_samples} prior trajectories, {B} puzzles; "
        "se and dse include the spread between seeds where an arm has several (method: inference/evaluate.elpd_table)",
        "",
        "| rank | run | seeds | elpd | se | elpd_diff | dse |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(ranked):
        v, k = mean[name], len(scores[name])
        diff = mean[best] - v
        puzzles_var = B * diff.var(ddof=1) if B > 1 else float("nan")
        extra = seed_var(scores[best]) + seed_var(scores[name]) if name != best else 0.0
        dse = float(np.sqrt(puzzles_var + extra))
        se = float(np.sqrt((B * v.var(ddof=1) if B > 1 else float("nan")) + seed_var(scores[name])))
        seeds = f"{k}" if k > 1 else "1 (seed spread unknown)"
        lines.append(f"| {i} | {name} | {seeds} | {v.sum():.1f} | {se:.1f} | {diff.sum():.1f} | {dse:.1f} |")
    return "\n".join(lines)


RATES = ("valid", "any_valid", "coverage")  # shares; distinct_valid is a count


def comparison_table(rows: list[tuple[str, str, list[dict]]], num_samples: int) -> str:
    """A markdown table of (arm, variant, `evaluate_run` metrics of each of its seeds) rows, as
    `gram compare` prints it: each metric the mean over seeds ± its standard error (s.d./√k);
    with one seed, the binomial standard error over puzzles × samples (one-sample validity) or
    puzzles (the others), and the row says the seed spread is not included."""
    n = num_samples
    lines = [
        f"held-out puzzles: {rows[0][2][0]['puzzles']}, {n} prior samples each; mean ± standard error",
        "",
        f"| run | variant | seeds | valid (1 sample) | puzzles solved@{n} | distinct valid@{n} | coverage@{n} |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, variant, ms in rows:
        cells = []
        for key in (*RATES[:2], "distinct_valid", "coverage"):
            v = np.array([m[key] for m in ms], dtype=np.float64)
            if len(v) > 1:
                se = v.std(ddof=1) / np.sqrt(len(v))
            elif key in RATES:  # one seed: the binomial error of the rate over its trials
                trials = ms[0]["puzzles"] * (n if key == "valid" else 1)
                se = np.sqrt(v[0] * (1 - v[0]) / max(trials, 1))
            else:
                se = float("nan")
            cells.append(f"{v.mean():.1%} ± {se:.1%}" if key in RATES else f"{v.mean():.2f} ± {se:.2f}")
        seeds = f"{len(ms)}" if len(ms) > 1 else "1 (seed spread unknown)"
        lines.append(f"| {run} | {variant} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def generation_report(
    boards: np.ndarray,
    valid: np.ndarray,
    train_y: np.ndarray,
    test_y: np.ndarray,
    conflicts=None,
    grid_count: int | None = None,
) -> dict:
    """What unconditional samples (M, L_y) with their validity (M,) are worth as generated boards:
    the valid share, distinct valid boards and their share of the valid samples (1: no valid board
    drawn twice), the share of valid samples that copy a training grid, and how many of the
    held-out grids (never trained on) were generated; with `conflicts` (M,) (Task.conflicts of each
    sample) also their mean, how far the samples are from valid where few or none are. With
    `grid_count` (Task.grid_count: all valid grids) also what a sampler uniform over every grid
    would give with as many valid draws: the copies of a training grid it would make on average
    (a model that never memorised still copies that often) and its expected distinct grids."""
    boards, valid = np.asarray(boards), np.asarray(valid, dtype=bool)
    keys = [b.astype(np.uint8).tobytes() for b in boards[valid]]
    train = {y.astype(np.uint8).tobytes() for y in np.asarray(train_y)}
    test = {y.astype(np.uint8).tobytes() for y in np.asarray(test_y)}
    distinct = set(keys)
    uniform = {}
    if grid_count:  # k uniform draws from G grids: k·T/G copies of the T training grids, G·(1 − (1 − 1/G)^k) distinct
        k, g = len(keys), float(grid_count)
        uniform = {"grids": int(grid_count), "copies_uniform": k * len(train) / g,
                   "distinct_uniform": -g * math.expm1(k * math.log1p(-1 / g)) if g > 1 else float(k > 0)}  # fmt: skip
    return {
        "samples": int(len(boards)),
        "valid": float(valid.mean()),
        "distinct_valid": len(distinct),
        "distinct_share": len(distinct) / max(len(keys), 1),
        "copies": float(np.mean([k in train for k in keys])) if keys else 0.0,
        "copy_count": sum(k in train for k in keys),
        "held_out_generated": len(distinct & test),
        "held_out": len(test),
        **({"conflicts_mean": float(np.mean(conflicts))} if conflicts is not None else {}),
        **uniform,
    }


def describe_generation(m: dict) -> str:
    """One line of generation_report for a person."""
    conflicts = f", {m['conflicts_mean']:.1f} conflicts per sample" if "conflicts_mean" in m else ""
    line = (f"{m['samples']} samples: {m['valid']:.1%} valid{conflicts}, {m['distinct_valid']} distinct valid "
            f"({m['distinct_share']:.1%} of the valid samples distinct), {m['copies']:.1%} of the valid samples copy "
            f"a training grid, {m['held_out_generated']} of the {m['held_out']} held-out grids generated")  # fmt: skip
    if "grids" in m:
        line += (f"; a sampler uniform over all {m['grids']:,} grids would draw {m['distinct_uniform']:,.1f} distinct "
                 f"and copy a training grid {m['copies_uniform']:.2f} times on average (here {m['copy_count']})")  # fmt: skip
    return line


def evaluate_run(
    folder,
    num_samples: int = 20,
    depth: int | None = None,
    puzzles: int | None = None,
    temperature: float | tuple[float, float] | None = None,
    first: int = 0,
) -> dict:
    """Prior samples for the held-out puzzles of a run (a folder or a LoadedRun), scored against exact ground truth
    (inference.evaluate.sample_metrics), plus single-sample validity after each step and the
    metrics split by the inputs' numbers of solutions (1, 2-3, 4+). `temperature` scales the
    prior's σ (one τ, a pair (start, end) or None: the run's, config.temperature_schedule). A task without a checker (digits) is scored by
    gram_ppl.tasks.digits.image_metrics over all num_samples x puzzles images instead. For
    unconditional generation every held-out input is the same blank one, so `puzzles` left as
    None means one: num_samples boards, not num_samples for each of the held-out inputs. `first`
    skips that many held-out puzzles, so that settings (τ, depth) can be chosen on a slice that
    the reported score (puzzles from 0) never sees."""
    from gram_ppl.inference.loading import LoadedRun, load_run
    from gram_ppl.inference.sampling import rollout

    run = folder if isinstance(folder, LoadedRun) else load_run(folder)
    cfg, net, data, mod = run
    task = data.task
    if first < 0 or first >= len(data.test.x):
        raise ValueError(
            f"first={first}: the run has {len(data.test.x)} held-out puzzles (0 to {len(data.test.x) - 1})"
        )
    if puzzles is None and cfg.task.generates:  # blank inputs, all the same: num_samples boards
        puzzles = 1
    test = data.test.rows(slice(first, None if puzzles is None else first + puzzles))
    x, depth = test.x, depth or sample_depth(cfg)
    r = rollout(mod, net, cfg, x, num_samples, depth, temperature=temperature, seed=seed_for(cfg, "evaluate"))
    head = {"puzzles": len(x), "num_samples": num_samples, "depth": depth, **temperature_record(cfg, temperature)}
    if first:
        head["first"] = first
    if run.best is not None:  # fit.keep_best: which evaluation's weights were sampled
        head["kept_best"] = run.best
    if not task.checker:  # images (digits): a classifier on held-out real digits judges the samples
        from gram_ppl.tasks.digits import judge_run_samples

        return {**head, **judge_run_samples(data, r.boards, task.sample_labels(x, r.boards.shape[:2]))}
    n_sol = test.num_solutions
    metrics = sample_metrics(task, x, test.y, r.boards, n_sol)
    by_depth = [round(float(task.is_valid(x[None], b).mean()), 6) for b in r.per_step]
    by_count = {}
    for name, lo, hi in (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, None)):
        sel = (n_sol >= lo) & ((n_sol <= hi) if hi is not None else True)
        if sel.any() and len(np.unique(n_sol)) > 1:
            m = sample_metrics(task, x[sel], test.y[sel], r.boards[:, sel], n_sol[sel])
            by_count[name] = {"puzzles": int(sel.sum()), "valid": m["valid"], "coverage": m["coverage"]}
    votes = task.vote_report(x, r.boards, r.value)  # ARC: pass@2 over each test pair's augmented versions
    out = {**head, **metrics, **votes, "valid_by_depth": by_depth, "by_num_solutions": by_count}
    if cfg.task.generates:  # blank inputs: the samples as generated boards, against the grid sets
        flat = r.boards.reshape(-1, r.boards.shape[-1])  # (M, L_y)
        bad = task.conflicts(x[:1], flat)  # (M,): every input is the same blank board
        out["generation"] = generation_report(flat, bad == 0, data.train.y, data.test.y, bad, task.grid_count)
    return out
