"""ArviZ export and diagnostics of the posterior over latent trajectories (numpy and ArviZ only).

The sampled trajectories (`Trajectories`, filled by `gram_ppl.inference.trajectories.collect`) become an
`arviz.InferenceData` through `arviz.from_dict` with explicit dims; `from_pyro` handles MCMC
only and the automatic dims of the SVI converters mislabel scanned steps (ppl-notes §4).

Groups and dims (chain = an independent fit or seed, draw = a sampled trajectory, puzzle,
step = supervision step with z_0 included as step 0, so depth + 1 entries):

    posterior            guide draws q_φ(τ | x, y): board, h_norm, sigma, kl, h_pca, log_lik[, h]
    sample_stats         log_weight, valid, halt_step, lprm  of the guide draws    (chain, draw, puzzle)
    predictions          prior draws p_θ(τ | x) for the same puzzles: board, match, valid, halt_step,
                         lprm, h_norm, sigma, h_pca, log_lik[, h]
    prior, prior_predictive  prior draws of an untrained network (the prior predictive check)
    observed_data        y (puzzle, cell);  constant_data / predictions_constant_data: x (puzzle, input)

Diagnostics that mean something for amortized VI (ppl-notes §5): the PSIS k̂ of the guide per
puzzle (Yao, Vehtari, Simpson and Gelman 2018) against the sample-size-aware threshold
min(1 − 1/log10 S, 0.7), the importance-weighted estimate of log p(y | x) with its effective
sample size, and R-hat across independent fits on identifiable quantities only (validity,
per-cell agreement with a reference board, log p(y | h)), never on latent coordinates.
"""

from __future__ import annotations

import json
import warnings
from typing import NamedTuple

import numpy as np

STEP_NOTE = "step 0 is the initial state z_0; step n the state after supervision step n"


class Trajectories(NamedTuple):
    """N sampled trajectories for each of B puzzles, summarised per supervision step."""

    source: str  # "guide" (q_φ(τ | x, y)) or "prior" (p_θ(τ | x))
    board: np.ndarray  # (N, B, S+1, L_y) argmax f_dec(h) after each step
    h_norm: np.ndarray  # (N, B, S+1) root mean square of h over tokens and channels
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
    """Project h (N, B, S+1, ...) on the first principal components of each puzzle's states after
    step 0: (N, B, S+1, components). z_0 (step 0, the same for every draw) is projected but not
    fitted, so the axes show how trajectories spread. The axes are fitted per puzzle: compare
    shapes, not coordinates, across puzzles (and never across fits: latent spaces are
    identified only up to rotation)."""
    N, B, S = h.shape[:3]
    flat = h.reshape(N, B, S, -1).astype(np.float64)
    out = np.zeros((N, B, S, components))
    for b in range(B):
        fit = flat[:, b, 1:] if S > 1 else flat[:, b]
        fit = fit.reshape(-1, fit.shape[-1])  # (N*S, L*D)
        mean = fit.mean(0)
        axes = _principal_axes(fit - mean, components)  # (L*D, components)
        out[:, b] = (flat[:, b] - mean) @ axes
    return out


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
    """`import arviz` without its once-a-day FutureWarning, which says nothing about our use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ARVIZ_REFACTOR_WARNING, category=FutureWarning)
        import arviz

    return arviz


# ---- export ----------------------------------------------------------------------------------
def to_inference_data(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    posterior: Trajectories | None = None,
    predictions: Trajectories | None = None,
    prior: Trajectories | None = None,
    attrs: dict | None = None,
):
    """One fit's trajectories as `arviz.InferenceData` (chain of length 1; see `concat_fits`).

    x (B, L_x) puzzles, y (B, L_y) reference solutions (needed for `posterior`). Each
    Trajectories' `h` is exported only when it was collected (opt-in: it is large).
    """
    az = import_arviz()
    if posterior is not None and y is None:
        raise ValueError("guide draws (posterior) need the reference solutions y")
    given = [t for t in (posterior, predictions, prior) if t is not None]
    if not given:
        raise ValueError("nothing to export: pass posterior, predictions or prior trajectories")
    for t in given:
        if t.board.shape[1] != len(x):
            raise ValueError(f"{t.source} trajectories cover {t.board.shape[1]} puzzles, x has {len(x)}")
    step_dims = ["puzzle", "step"]
    dims = {
        "board": [*step_dims, "cell"],
        "match": ["puzzle", "cell"],
        "h_norm": step_dims,
        "sigma": step_dims,
        "kl": step_dims,
        "log_lik": step_dims,
        "h_pca": [*step_dims, "pc"],
        "h": [*step_dims, "token", "channel"],
        "log_weight": ["puzzle"],
        "valid": ["puzzle"],
        "halt_step": ["puzzle"],
        "lprm": ["puzzle"],
        "x": ["puzzle", "input"],
        "y": ["puzzle", "cell"],
    }
    depth = given[0].depth
    coords = {"puzzle": np.arange(len(x)), "step": np.arange(depth + 1), "pc": [1, 2]}
    groups = {}
    if posterior is not None:
        groups["posterior"] = _latent_vars(posterior, ("board", "h_norm", "sigma", "kl", "log_lik", "h_pca"))
        groups["sample_stats"] = _chain(
            {k: getattr(posterior, k) for k in ("log_weight", "valid", "halt_step", "lprm")}
        )
        groups["observed_data"] = {"y": y}
    if predictions is not None:
        pred = _latent_vars(predictions, ("board", "h_norm", "sigma", "log_lik", "h_pca"))
        pred.update(_chain({k: getattr(predictions, k) for k in ("valid", "halt_step", "lprm")}))
        if y is not None:  # per-cell agreement of the final board with the reference board
            pred["match"] = (pred["board"][:, :, :, -1] == y[None, None]).astype(np.int8)
        groups["predictions"] = pred
        groups["predictions_constant_data"] = {"x": x}
    if prior is not None:
        groups["prior"] = _latent_vars(prior, ("h_norm", "sigma", "h_pca"))
        groups["prior_predictive"] = {"board": _latent_vars(prior, ("board",))["board"]}
        groups["prior_predictive"].update(_chain({"valid": prior.valid}))
    groups["constant_data"] = {"x": x}
    meta = {"step_note": STEP_NOTE, **{k: _attr(v) for k, v in (attrs or {}).items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "More chains (1) than draws" style shape hints
        idata = az.from_dict(**groups, coords=coords, dims=dims, pred_dims=dims, pred_coords=coords, attrs=meta)
    for name in idata.groups():
        idata[name].attrs.update(meta)
    return idata


def _latent_vars(t: Trajectories, names) -> dict:
    out = _chain({k: getattr(t, k) for k in names})
    if t.h is not None:
        out["h"] = t.h[None]
    return out


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
    """R-hat over chains (independent fits) of identifiable prediction quantities: validity and
    per-cell agreement with the reference board per puzzle, and log p(y | h) after the last step.
    Raw latent coordinates are refused: across fits they are identified only up to rotation."""
    az = import_arviz()
    pred = idata.predictions
    if pred.sizes["chain"] < 2:
        raise ValueError("R-hat needs at least two independent fits (chains); see concat_fits")
    out = {}
    for name in var_names:
        if name not in IDENTIFIABLE:
            raise ValueError(f"R-hat only on identifiable quantities {IDENTIFIABLE}, not {name!r}")
        if name not in pred:
            continue
        var = pred[name].isel(step=-1) if "step" in pred[name].dims else pred[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant draws give nan
            out[name] = np.asarray(az.rhat(var.to_dataset(name=name))[name])
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
