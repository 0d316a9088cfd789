"""ArviZ export and diagnostics of the posterior over latent trajectories (numpy and ArviZ only).

The sampled trajectories (`Trajectories`, filled by `gram_ppl.inference.trajectories.collect`) become an
`arviz.InferenceData` through `arviz.from_dict` with explicit dims; `from_pyro` handles MCMC
only and the automatic dims of the SVI converters mislabel scanned steps (ppl-notes §4).

Groups follow ArviZ's schema (docs/diagnostics.md has the table and what each ArviZ function
means here): posterior / prior hold continuous latent summaries of the guide's and the prior's
trajectories per supervision step; posterior_predictive / prior_predictive the decoded boards
and statistics of them under the same names as observed_data; log_likelihood log p(y | τ_s, x)
per guide draw; sample_stats / sample_stats_prior importance weights, KL, halting, LPRM.

Diagnostics that mean something for amortized VI (ppl-notes §5): the PSIS k̂ of the guide per
puzzle (Yao, Vehtari, Simpson and Gelman 2018) against the sample-size-aware threshold
min(1 − 1/log10 S, 0.7), the importance-weighted estimate of log p(y | x) with its effective
sample size, and R-hat across independent fits on identifiable quantities only (validity,
per-cell agreement with a reference board, log p(y | h)), never on latent coordinates.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Trajectories(NamedTuple):
    """N sampled trajectories for each of B puzzles, summarised per supervision step."""

    source: str  # "guide" (q_φ(τ | x, y)) or "prior" (p_θ(τ | x))
    board: np.ndarray  # (N, B, S+1, L_y) argmax f_dec(h) after each step
    board_draw: np.ndarray  # (N, B, L_y) a board drawn from the likelihood p(y | τ, x) after the last step
    log_lik_cells: np.ndarray  # (N, B, L_y) log p(y_c | τ, x) per cell of the reference y (nan without y)
    h_norm: np.ndarray  # (N, B, S+1) root mean square of h over tokens and channels
    eps_rms: np.ndarray  # (N, B, S+1) root mean square of the noise ε drawn in each step (0 at step 0)
    sigma: np.ndarray  # (N, B, S+1) mean prior noise scale σ_θ(u) of the step's transitions
    kl: np.ndarray  # (N, B, S+1) KL(q ‖ p) of the step's transitions (0 where the prior draws)
    log_lik: np.ndarray  # (N, B, S+1) log p(y | h) of the reference board y after each step
    log_weight: np.ndarray  # (N, B) log p(y, τ | x) − log q(τ | x, y), y observed after the last step
    valid: np.ndarray  # (N, B) the final board satisfies every constraint and the givens
    halt_step: np.ndarray  # (N, B) first step whose halt head says σ(q) > 0.5 (depth if none)
    lprm: np.ndarray  # (N, B) LPRM value v_ψ(h) after the last step
    h_pca: np.ndarray  # (N, B, S+1, 2) h projected on its 2 first principal components, per puzzle
    h: np.ndarray | None = None  # (N, B, S+1, L, D) full high-level states, only when asked

    @property
    def depth(self) -> int:
        return self.board.shape[2] - 1


def pca_per_puzzle(h: np.ndarray, components: int = 2) -> np.ndarray:
    """Project h (N, B, S+1, ...) of every step on the first principal components of each puzzle's
    *final* states (N, ...): (N, B, S+1, components). The axes are where the draws end up apart
    (which solution they reach), so a fan shows the split into solutions instead of the common
    step-to-step drift; earlier steps are projected on the same axes. Fitted per puzzle: compare
    shapes, not coordinates, across puzzles (and never across fits: latent spaces are identified
    only up to rotation)."""
    N, B, S = h.shape[:3]
    flat = h.reshape(N, B, S, -1).astype(np.float64)
    out = np.zeros((N, B, S, components))
    for b in range(B):
        final = flat[:, b, -1]  # (N, L*D)
        mean = final.mean(0)
        axes = _principal_axes(final - mean, components)  # (L*D, components)
        out[:, b] = (flat[:, b] - mean) @ axes
    return out


def commit_steps(boards: np.ndarray) -> np.ndarray:
    """For boards (N, S+1, L_y) of N trajectories after each step (step 0: z_0's decode), the
    step from which each trajectory's decoded board no longer changes: (N,) in 0..S."""
    boards = np.asarray(boards)
    same = (boards == boards[:, -1:]).all(-1)  # (N, S+1): equal to the final board
    changed_after = np.flip(np.cumsum(np.flip(~same, 1), 1), 1) > 0  # (N, S+1): a differing step at or after s
    return changed_after.sum(1)  # the first step s with no differing step from s on


def board_entropy(boards: np.ndarray, vocab: int) -> np.ndarray:
    """Per-cell entropy (nats) of the tokens of N boards (N, ..., L_y) over the draws: (..., L_y)."""
    boards = np.asarray(boards)
    counts = np.stack([(boards == v).mean(0) for v in range(vocab)], -1)  # (..., L_y, V)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(counts > 0, counts * np.log(counts), 0.0).sum(-1)


def _principal_axes(rows: np.ndarray, k: int) -> np.ndarray:
    """The first k principal axes (p, k) of centred rows (n, p), from a symmetric eigen-
    decomposition of the smaller of X·Xᵀ and Xᵀ·X (LAPACK's SVD fails to converge on such states
    when denormals are flushed to zero, as training and sampling set)."""
    n, p = rows.shape
    axes = np.zeros((p, k))
    if n <= p:
        w, u = np.linalg.eigh(rows @ rows.T)  # ascending eigenvalues
        w, u = w[::-1][:k], u[:, ::-1][:, :k]
        keep = w > 1e-12 * max(w[0], 1e-300)
        top = rows.T @ u[:, keep] / np.sqrt(w[keep])
    else:
        _, v = np.linalg.eigh(rows.T @ rows)
        top = v[:, ::-1][:, :k]
    axes[:, : top.shape[1]] = top
    return axes


# arviz 0.23 warns once a day (a date stamp in the user's cache folder) that 1.x is coming. Its
# message starts with a newline, so the pattern allows leading whitespace (warnings matches the
# start of the message). ArviZ skips the warning when arviz-base/-stats/-plots 0.8 are importable,
# but arviz-plots 0.8.0 fails to import with matplotlib 3.11 (`matplotlib.style.core`), so not here.
ARVIZ_REFACTOR_WARNING = r"\s*ArviZ is undergoing a major refactor"


def import_arviz():
    """`import arviz` without its once-a-day FutureWarning, which says nothing about our use, and
    on a read-only cache folder too (ArviZ writes a stamp under XDG_CACHE_HOME at import: where
    that cannot be written, the import sees a fresh temporary cache folder instead)."""
    import sys

    if "arviz" in sys.modules:
        return sys.modules["arviz"]
    with warnings.catch_warnings(), _writable_cache_home():
        warnings.filterwarnings("ignore", message=ARVIZ_REFACTOR_WARNING, category=FutureWarning)
        import arviz

    return arviz


@contextlib.contextmanager
def _writable_cache_home():
    import os
    import tempfile

    from platformdirs import user_cache_dir

    try:
        folder = Path(user_cache_dir("arviz", "arviz"))
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            writable = True
    except OSError:
        writable = False
    if writable:
        yield
        return
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gram-ppl-cache-")
    os.environ.setdefault("MPLCONFIGDIR", os.environ["XDG_CACHE_HOME"])  # matplotlib's config folder: likewise
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


# ---- export ----------------------------------------------------------------------------------
def to_inference_data(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    posterior: Trajectories | None = None,
    prior: Trajectories | None = None,
    task=None,
    solutions: list[np.ndarray] | None = None,
    attrs: dict | None = None,
):
    """Trajectories as `arviz.InferenceData` in ArviZ's own schema (one chain per fit; see
    `concat_fits`; docs/diagnostics.md says what each group means here).

    x (B, L_x) puzzles; y (B, L_y) reference solutions (the observed data; needed with
    `posterior`, the guide's draws q(τ | x, y)); `prior` the draws of p(τ | x). With `task`
    the predictive groups carry conflicts and, with the exact `solutions` of each puzzle, the
    Hamming distance to the nearest one. Full states h are exported only when collected.
    Groups: posterior / prior (continuous latent summaries per step 1..S), posterior_predictive
    / prior_predictive (the decoded final board and statistics of it, named as in
    observed_data), log_likelihood (log p(y | τ_s, x) per guide draw and puzzle),
    sample_stats / sample_stats_prior (importance weights, KL, halting, LPRM, log p(y | τ)),
    observed_data, constant_data (x).
    """
    az = import_arviz()
    given = _check_export(x, y, posterior, prior, solutions)
    steps = ["puzzle", "step"]
    board_stats = ("valid", "conflicts", "match", "distance")
    dims = {
        "noise_rms": ["puzzle"], "noise_rms_by_step": steps, "h_norm": ["puzzle"], "h_norm_by_step": steps, "sigma": steps, "kl": steps, "h_pca": [*steps, "pc"],
        "h": [*steps, "token", "channel"], "board": ["puzzle", "cell"], "board_argmax": ["puzzle", "cell"],
        "log_weight": ["puzzle"], "halt_step": ["puzzle"], "lprm": ["puzzle"], "log_lik": ["puzzle"],
        "x": ["puzzle", "input"], **{k: ["puzzle"] for k in board_stats},
        **{f"{k}_argmax": ["puzzle"] for k in board_stats},
    }  # fmt: skip
    depth = given[0].depth
    coords = {"puzzle": np.arange(len(x)), "step": np.arange(1, depth + 1), "pc": [0, 1]}
    groups = {"constant_data": {"x": x}}
    if y is not None:
        groups["observed_data"] = _observed(x, y, task, solutions)
    if posterior is not None:
        groups["posterior"] = _latents(posterior)
        groups["posterior_predictive"] = _predictive(posterior, x, y, task, solutions)
        groups["log_likelihood"] = _chain({"board": posterior.log_lik_cells})  # per cell, as observed_data's board
        groups["sample_stats"] = _chain({**_trajectory_stats(posterior), "log_weight": posterior.log_weight,
                                         "kl": posterior.kl[:, :, 1:]})  # fmt: skip
    if prior is not None:
        groups["prior"] = _latents(prior)
        groups["prior_predictive"] = _predictive(prior, x, y, task, solutions)
        stats = _trajectory_stats(prior)
        if y is not None:
            stats["log_lik"] = prior.log_lik[:, :, -1]
        groups["sample_stats_prior"] = _chain(stats)
    meta = {"step_note": STEP_NOTE, "loo": LOO_NOTE, **{k: _attr(v) for k, v in (attrs or {}).items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "More chains (1) than draws" style shape hints
        idata = az.from_dict(**groups, coords=coords, dims=dims, attrs=meta)
    for name in idata.groups():
        idata[name].attrs.update(meta)
        for var in idata[name].data_vars:
            idata[name][var].attrs["description"] = DESCRIPTIONS.get((name, var)) or _describe(var)
    return idata


def _describe(var: str) -> str:
    if var.endswith("_argmax"):
        return DESCRIPTIONS[var.removesuffix("_argmax")] + " (of the argmax decode, board_argmax)"
    return DESCRIPTIONS[var]


LOO_NOTE = (
    "az.loo / az.compare / az.plot_loo_pit here: log_likelihood holds log p(y_c | tau_s, x) per cell c of the "
    "reference solution y, for guide draws tau_s ~ q(tau | x, y) that have seen all of y. They do not estimate "
    "predictive accuracy on new puzzles, and az.compare rankings of runs from them mean nothing; use "
    "gram compare --elpd (held-out log p(y | x) from prior trajectories). gram_ppl.diagnostics.explain_loo says so."
)


def explain_loo(idata=None) -> str:
    """What az.loo, az.compare and az.plot_loo_pit mean on `gp.to_inference_data`'s export (the
    `loo` attr it stores), and what to use instead for comparing fits."""
    if idata is not None and "loo" not in idata.attrs:
        return "this InferenceData was not written by gram_ppl.to_inference_data: no statement about az.loo"
    return LOO_NOTE


def _check_export(x, y, posterior, prior, solutions) -> list[Trajectories]:
    """The trajectories given, after checking that they fit x, y and the solution sets."""
    if posterior is not None and y is None:
        raise ValueError("guide draws (posterior) need the reference solutions y")
    given = [t for t in (posterior, prior) if t is not None]
    if not given:
        raise ValueError("nothing to export: pass posterior or prior trajectories")
    for t in given:
        if t.board.shape[1] != len(x):
            raise ValueError(f"{t.source} trajectories cover {t.board.shape[1]} puzzles, x has {len(x)}")
    if solutions is not None and len(solutions) != len(x):
        raise ValueError(f"{len(solutions)} solution sets for {len(x)} puzzles")
    return given


STEP_NOTE = "step n is the state after supervision step n (z_0, the same for every draw, is left out)"
DESCRIPTIONS = {
    "noise_rms": "root mean square of the transition noise ε drawn along the whole trajectory (the latent "
    "variables themselves, summarised; how far the draw departs from the noiseless path)",
    "noise_rms_by_step": "root mean square of the transition noise ε drawn in each supervision step",
    "h_norm": "root mean square of the high-level state h over tokens and channels, after the last step "
    "(the state that is decoded; RMSNorm keeps it near 1)",
    "h_norm_by_step": "root mean square of the high-level state h over tokens and channels, after each step",
    "sigma": "mean prior noise scale σ_θ(u_t) of the step's transitions",
    "h_pca": "h projected on its first two principal components (per puzzle, over draws and steps)",
    "h": "the full high-level state h (opt-in)",
    "kl": "KL(q ‖ p) of the step's transition noise, nats (0 where the prior drew it)",
    "board": "a board drawn from the likelihood, y ~ Categorical(f_dec(h)) cell by cell, after the last step "
    "(token ids, docs/data.md)",
    "board_argmax": "the argmax decode argmax f_dec(h) after the last step (what gram sample returns; token ids)",
    ("observed_data", "board"): "the reference solution y (token ids, docs/data.md)",
    "valid": "1 where the board satisfies every constraint and keeps the givens",
    "conflicts": "number of violated constraints of the board",
    "match": "share of cells equal to the reference solution y",
    "distance": "Hamming distance to the nearest exact solution of the puzzle (cells)",
    "log_weight": "log p(y, τ | x) − log q(τ | x, y): importance weight of the guide draw (PSIS k̂, log p(y | x))",
    "log_lik": "log p(y | τ, x) of the reference y after the last step, for a prior draw τ",
    ("log_likelihood", "board"): "log p(y_c | τ_s, x) of each cell c of the observed y given the guide's sampled "
    "trajectory τ_s (summed over cells: log p(y | τ_s, x); conditional on τ_s, not the marginal log p(y | x))",
    "halt_step": "first supervision step whose halt head says σ(q) > 0.5 (the depth if none)",
    "lprm": "LPRM value v_ψ(h) after the last step",
    "x": "the puzzle (input token ids)",
}


def _latents(t: Trajectories) -> dict:
    """The posterior / prior group: the latent noise of each draw summarised by one real number per
    puzzle, its root mean square over the whole trajectory (per-step values, h and projections
    are trajectory statistics: `_trajectory_stats`)."""
    out = _chain({"noise_rms": np.sqrt((t.eps_rms[:, :, 1:] ** 2).mean(-1))})
    if t.h is not None:
        out["h"] = t.h[None, :, :, 1:]
    return out


def _trajectory_stats(t: Trajectories) -> dict:
    return {"noise_rms_by_step": t.eps_rms[:, :, 1:], "h_norm": t.h_norm[:, :, -1], "h_norm_by_step": t.h_norm[:, :, 1:],
            "sigma": t.sigma[:, :, 1:], "h_pca": t.h_pca[:, :, 1:], "halt_step": t.halt_step, "lprm": t.lprm}  # fmt: skip


def _predictive(t: Trajectories, x, y, task, solutions) -> dict:
    """Boards drawn from the likelihood (`board`, the predictive draws ArviZ expects) and the argmax
    decode (`board_argmax`, what sampling returns), each with its statistics."""
    argmax = t.board[:, :, -1]  # (N, B, L_y)
    out = {"board": t.board_draw, "board_argmax": argmax}
    for suffix, board in (("", t.board_draw), ("_argmax", argmax)):
        valid = task.is_valid(x[None], board) if task is not None else (t.valid if suffix else None)
        if valid is not None:
            out[f"valid{suffix}"] = np.asarray(valid).astype(np.int8)
        out.update({f"{k}{suffix}": v for k, v in _board_stats(x, board, y, task, solutions).items()})
    return _chain(out)


def _observed(x, y, task, solutions) -> dict:
    out = {"board": y, "valid": np.ones(len(y), np.int8)}
    out.update({k: v[0] for k, v in _board_stats(x, y[None], y, task, solutions).items()})
    return out


def _board_stats(x, board, y, task, solutions) -> dict:
    """Statistics of boards (N, B, L_y) that observed_data shares: conflicts, agreement with y,
    distance to the nearest exact solution."""
    out = {}
    if task is not None:
        out["conflicts"] = np.asarray(task.conflicts(x[None], board), dtype=np.int64)
    if y is not None:
        out["match"] = (board == y[None]).mean(-1)
    if task is not None and solutions is not None:
        out["distance"] = nearest_distance(task, board, solutions)
    return out


def nearest_distance(task, board: np.ndarray, solutions: list[np.ndarray]) -> np.ndarray:
    """Hamming distance (cells) of boards (N, B, L_y) to the nearest exact solution of their
    puzzle (`solutions[b]`, (m, L_y)), compared in the task's canonical form: (N, B)."""
    dist = np.empty(board.shape[:2], np.int64)
    for b, sols in enumerate(solutions):
        canon = np.stack([task.canonical(s) for s in sols])  # (m, L_y)
        drawn = np.stack([task.canonical(v) for v in board[:, b]])  # (N, L_y)
        dist[:, b] = (drawn[:, None] != canon[None]).sum(-1).min(1)
    return dist


def _chain(d: dict) -> dict:
    return {k: np.asarray(v)[None] for k, v in d.items()}  # (1, N, ...): one chain per fit


def _attr(v):
    return v if isinstance(v, str | int | float) else json.dumps(v, default=str)


def concat_fits(datasets: list):
    """InferenceData of independent fits (the same puzzles and draws) stacked along `chain`."""
    az = import_arviz()
    if len(datasets) < 2:
        raise ValueError("concat_fits needs at least two fits")
    return az.concat(*datasets, dim="chain")


# ---- diagnostics -------------------------------------------------------------------------------
class PsisResult(NamedTuple):
    khat: np.ndarray  # (B,) Pareto shape of the guide's importance weights, per puzzle
    threshold: float  # min(1 − 1/log10 S, 0.7): k̂ above it means q is unreliable for that puzzle
    ess: np.ndarray  # (B,) effective sample size of the smoothed weights
    log_marginal: np.ndarray  # (B,) log p(y | x) ≈ logsumexp(log w) − log S
    constant: np.ndarray  # (B,) weights all equal (deterministic variant): k̂ is undefined (nan)


def khat_threshold(num_draws: int) -> float:
    """The sample-size-aware k̂ threshold of Vehtari et al. (2024): min(1 − 1/log10 S, 0.7)."""
    if num_draws < 2:
        raise ValueError("k̂ needs at least 2 draws")
    return float(min(1 - 1 / np.log10(num_draws), 0.7))


def psis(log_weight: np.ndarray) -> PsisResult:
    """Pareto-smoothed importance sampling of log w (S, B): k̂, ESS and log p(y | x) per puzzle."""
    lw = np.asarray(log_weight, dtype=np.float64)
    if lw.ndim != 2 or lw.shape[0] < 2:
        raise ValueError(f"log weights must be (draws ≥ 2, puzzles), got shape {lw.shape}")
    if not np.isfinite(lw).all():
        raise ValueError("log weights contain nan or inf (mean-only variant, or a failed draw)")
    az = import_arviz()
    S = lw.shape[0]
    log_marginal = np.logaddexp.reduce(lw, axis=0) - np.log(S)
    constant = np.ptp(lw, axis=0) < 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz warns on k̂ > 0.7; we report it instead
        smoothed, khat = az.psislw(lw.T.copy())  # (B, S), (B,)
    w = np.exp(smoothed - np.logaddexp.reduce(smoothed, axis=1, keepdims=True))
    ess = 1.0 / (w**2).sum(1)
    khat = np.where(constant, np.nan, np.asarray(khat, dtype=np.float64))
    return PsisResult(khat, khat_threshold(S), np.where(constant, S, ess), log_marginal, constant)


IDENTIFIABLE = ("valid", "match", "log_lik")


def rhat_across_fits(idata, var_names=IDENTIFIABLE) -> dict[str, np.ndarray]:
    """R-hat over chains (independent fits) of identifiable quantities of the prior draws, per
    puzzle: validity and agreement with the reference board (prior_predictive), log p(y | τ)
    after the last step (sample_stats_prior). Raw latent coordinates are refused: across fits
    they are identified only up to rotation."""
    az = import_arviz()
    if "prior_predictive" not in idata.groups():
        raise ValueError("R-hat across fits needs prior draws (to_inference_data(..., prior=...))")
    if idata.prior_predictive.sizes["chain"] < 2:
        raise ValueError("R-hat needs at least two independent fits (chains); see concat_fits")
    out = {}
    for name in var_names:
        if name not in IDENTIFIABLE:
            raise ValueError(f"R-hat only on identifiable quantities {IDENTIFIABLE}, not {name!r}")
        group = idata.sample_stats_prior if name == "log_lik" else idata.prior_predictive
        if name not in group:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant draws give nan
            out[name] = np.asarray(az.rhat(group[name].astype(float).to_dataset(name=name))[name])
    return out


def prior_check_table(t: Trajectories) -> list[dict]:
    """Per step: mean noise scale σ, RMS of h, and the share of distinct boards among the draws
    (averaged over puzzles): what the PRIORS block implies before any data is seen."""
    N, B, S1 = t.board.shape[:3]
    rows = []
    for s in range(S1):
        distinct = np.mean([len({t.board[i, b, s].tobytes() for i in range(N)}) / N for b in range(B)])
        rows.append(
            {
                "step": s,
                "sigma": float(t.sigma[:, :, s].mean()),
                "h_rms": float(t.h_norm[:, :, s].mean()),
                "distinct_boards": float(distinct),
            }
        )
    return rows
