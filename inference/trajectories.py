"""Sampled trajectories with per-step summaries, read off Pyro traces of the model file.

`collect` runs N trajectories per puzzle one supervision step at a time, either through the guide
q_φ(τ | x, y) (the model replayed on the guide's noise, as in training) or from the prior
p_θ(τ | x), and records what `gram_ppl.diagnostics` exports to ArviZ: the decoded board, ‖h‖,
the prior noise scale, the KL of each step, log p(y | h) of a reference board, halting and LPRM
values, and the log importance weight log p(y, τ | x) − log q(τ | x, y) with y observed after
the last step (the predictive p(y | x) at that depth). `prior_predictive` does the same for an
untrained network: what the PRIORS block implies before any fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from gram_ppl import sites as gram_sites
from gram_ppl.config import GramConfig, sample_depth, with_priors
from gram_ppl.diagnostics import Trajectories, nearest_distance, pca_per_puzzle
from gram_ppl.inference.resources import check_depth, check_trajectories
from gram_ppl.inference.sampling import halts
from gram_ppl.inference.svi_pyro import SharedCore
from gram_ppl.networks.torch_nets import build_net


@torch.no_grad()
def collect(
    mod,
    net,
    cfg: GramConfig,
    task,
    x: np.ndarray,
    y: np.ndarray | None,
    num_samples: int,
    depth: int | None = None,
    source: str = "prior",
    latents: bool = False,
    seed: int = 0,
) -> Trajectories:
    """N trajectories for each puzzle x (B, L_x) from `source` ("guide" needs y (B, L_y)); the
    torch RNG is forked, so the caller's stream is untouched."""
    if source not in ("guide", "prior"):
        raise ValueError(f"source must be guide or prior, got {source!r}")
    if source == "guide" and y is None:
        raise ValueError("guide trajectories need the reference solutions y")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    depth = depth or sample_depth(cfg)
    B, N = len(x), num_samples
    check_depth(depth)
    check_trajectories(cfg, task, N * B, depth)  # every step's h is kept: refused, with the estimate, if too big
    dev = net.z0.device
    xs = torch.as_tensor(np.asarray(x).astype(np.int64), device=dev).repeat(N, 1)  # (N*B, L_x)
    ys = None if y is None else torch.as_tensor(np.asarray(y).astype(np.int64), device=dev).repeat(N, 1)  # (N*B, L_y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rec = _steps(mod, net, cfg, xs, ys, depth, source)
        drawn = torch.distributions.Categorical(logits=rec["logits"]).sample()  # (N*B, L_y): y ~ p(y | τ, x)
    shape = (N, B)
    cells = (
        torch.full(drawn.shape, float("nan"))
        if ys is None
        else torch.distributions.Categorical(logits=rec["logits"]).log_prob(ys)
    )  # (N*B, L_y) log p(y_c | τ, x) of the reference board's cells
    board = torch.stack(rec["board"], 1).view(N, B, depth + 1, -1).cpu().numpy()  # (N, B, S+1, L_y)
    h = torch.stack(rec["h"], 1)  # (N*B, S+1, L, D)
    per_step = {
        k: torch.stack(rec[k], 1).view(N, B, depth + 1).cpu().numpy()
        for k in ("h_norm", "sigma", "kl", "log_lik", "eps_rms")
    }
    h_np = h.view(N, B, depth + 1, *h.shape[2:]).cpu().numpy()
    halt_logits = torch.stack(rec["halt"], 1)  # (N*B, S): steps 1..S
    stops = halts(halt_logits)  # (N*B, S): the rollouts' halting rule
    halt_step = torch.where(
        stops.any(1), stops.float().argmax(1) + 1, torch.full_like(stops[:, 0], depth, dtype=torch.long)
    )
    return Trajectories(
        source=source,
        board=board,
        board_draw=drawn.view(N, B, -1).cpu().numpy(),
        log_lik_cells=cells.view(N, B, -1).cpu().numpy(),
        **per_step,
        log_weight=(rec["log_w"] + rec["log_lik"][-1]).view(shape).cpu().numpy(),
        valid=task.is_valid(np.asarray(x)[None], board[:, :, -1]),
        halt_step=halt_step.view(shape).cpu().numpy(),
        lprm=net.value(h[:, -1]).view(shape).cpu().numpy(),
        h_pca=pca_per_puzzle(h_np),
        h=h_np if latents else None,
    )


def _steps(mod, net, cfg, xs, ys, depth, source) -> dict[str, list]:
    """Run `depth` supervision steps, tracing each, and keep the per-step summaries."""
    rows = xs.shape[0]
    kw = dict(cfg=cfg, priors=cfg.priors, truncate=False, observe="every")
    h, _ = net.initial_state(rows)  # (N*B, L, D)
    zero = torch.zeros(rows, device=h.device)
    rec = {"board": [], "h": [], "h_norm": [], "sigma": [], "kl": [], "log_lik": [], "halt": [], "eps_rms": [zero]}
    _record(rec, net, h, ys, sigma=torch.full((rows,), cfg.priors.init_scale, device=h.device), kl=zero)
    carry, log_w = None, zero.clone()
    for n in range(depth):
        step_kw = dict(carry=carry, steps=range(n, n + 1), **kw)
        if source == "guide":
            shared = SharedCore(net)  # the model replayed on the guide's noise reuses its updates
            guide_tr = poutine.trace(mod.guide).get_trace(xs, ys, net=shared, **step_kw)
            replayed = poutine.replay(mod.model, trace=guide_tr)
            model_tr = poutine.trace(replayed).get_trace(xs, ys, net=shared.replay(), **step_kw)
        else:
            guide_tr, model_tr = None, poutine.trace(mod.model).get_trace(xs, ys, net=net, **step_kw)
        sigma, kl, count, eps_ms = zero.clone(), zero.clone(), 0, zero.clone()
        for name, site in model_tr.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or not gram_sites.is_noise(site):
                continue
            p = site["fn"]
            base = p.base_dist if isinstance(p, torch.distributions.Independent) else p
            sigma += base.scale.flatten(1).mean(1) if hasattr(base, "scale") else 0.0
            eps_ms += site["value"].flatten(1).pow(2).mean(1)  # (N*B,) mean square of the noise drawn
            count += 1
            if guide_tr is not None:
                q, v = guide_tr.nodes[name]["fn"], site["value"]
                log_ratio = p.log_prob(v) - q.log_prob(v)  # (N*B,)
                log_w += log_ratio
                kl += _kl(q, p, v)
        carry = model_tr.nodes["_RETURN"]["value"]
        _record(rec, net, carry[0], ys, sigma=sigma / max(count, 1), kl=kl)
        rec["eps_rms"].append((eps_ms / max(count, 1)).sqrt())
        rec["halt"].append(net.halt(carry[0]))
    rec["log_w"] = log_w
    rec["logits"] = net.decode(carry[0]) if depth else net.decode(h)  # (N*B, L_y, V_y) after the last step
    return rec


def _record(rec, net, h, ys, sigma, kl):
    logits = net.decode(h)  # (N*B, L_y, V_y)
    rec["board"].append(logits.argmax(-1))
    rec["h"].append(h)
    rec["h_norm"].append(h.pow(2).mean((1, 2)).sqrt())
    rec["sigma"].append(sigma)
    rec["kl"].append(kl)
    if ys is None:
        rec["log_lik"].append(torch.full_like(sigma, float("nan")))
    else:
        rec["log_lik"].append(torch.distributions.Categorical(logits=logits).log_prob(ys).sum(-1))


def _kl(q, p, value):
    """KL(q ‖ p) per row: closed form where torch has one, else one Monte Carlo draw."""
    try:
        return torch.distributions.kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(value) - p.log_prob(value)


def prior_predictive(
    cfg: GramConfig, task, x: np.ndarray, num_samples: int, depth: int | None = None, mod=None, seed: int = 0
) -> Trajectories:
    """Prior draws from a freshly initialised network (weights seeded by cfg.fit.seed) under
    the config's PRIORS block: the scale of the noise, the growth of h over steps and the
    diversity of decoded boards, before any fit."""
    from gram_ppl.inference.run import default_model

    mod = mod or default_model(cfg)
    cfg = with_priors(cfg, mod.PRIORS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.fit.seed)
        net = build_net(cfg, task).eval()
    return collect(mod, net, cfg, task, x, None, num_samples, depth, source="prior", seed=seed)


def prior_predictive_check(
    cfg: GramConfig, task, x: np.ndarray, priors: dict, *, solutions=None, inits: int = 4, num_samples: int = 16,
    depth: int | None = None, mod=None, seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """The prior predictive check of several PRIORS blocks side by side, before any fit: for each
    block (name -> PriorConfig), `inits` freshly initialised networks (weight seeds 0..inits-1)
    each with its own noise seed, `num_samples` prior draws per puzzle x (B, L_x). Per block, the
    statistics pooled over networks and draws: valid (draws,), conflicts (draws,), distance to the
    nearest exact solution (draws,; with `solutions`), distinct boards per puzzle and network
    (inits·B,), and the RMS of h after each step (draws, S+1). `plots.prior_check` draws them."""
    from gram_ppl.seeds import part

    out = {}
    for name, block in priors.items():
        stats = {"valid": [], "conflicts": [], "distance": [], "distinct": [], "h_norm": []}
        for k in range(inits):
            c = dataclasses.replace(cfg, priors=block, fit=dataclasses.replace(cfg.fit, seed=k))
            t = prior_predictive(c, task, x, num_samples, depth, mod=mod, seed=part(seed + k, "untrained"))
            final = t.board[:, :, -1]  # (N, B, L_y)
            stats["valid"].append(t.valid.ravel())
            stats["conflicts"].append(np.asarray(task.conflicts(x[None], final)).ravel())
            stats["distinct"].append([len({v.tobytes() for v in final[:, b]}) for b in range(len(x))])
            stats["h_norm"].append(t.h_norm.reshape(-1, t.h_norm.shape[-1]))
            if solutions is not None:
                stats["distance"].append(nearest_distance(task, final, solutions).ravel())
        out[name] = {k: np.concatenate(v) if k != "distinct" else np.asarray(v).ravel() for k, v in stats.items() if v}
    return out
