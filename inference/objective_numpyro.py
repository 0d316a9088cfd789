"""The NumPyro loss (inference/svi_numpyro.py's docstring tells it): in one `lax.scan` over the
supervision steps, each step's guide traced and the model's step replayed on its noise and on its
transitions, the terms read off the two traces; the balanced KL; the head losses."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.distributions.kl import kl_divergence

from gram_ppl.config import GramConfig, PriorConfig, prior_path
from gram_ppl.inference.objective import Recording
from gram_ppl.models.lowrank_numpyro import LowRankNoise, MixtureNoise, kl_to_lowrank


class Terms(NamedTuple):
    loss: jax.Array  # scalar that is minimised: the sum of `parts`
    nll: jax.Array  # (B,)
    kl: jax.Array  # (S,) KL of each supervision step, mean over puzzles
    h: jax.Array  # (B, L, D)
    l: jax.Array  # (B, L, D)
    logits: jax.Array  # (B, L_y, V_y) at the last step
    parts: dict  # the loss's named, weighted terms: nll, kl (β·KL), kl_cap (as svi_pyro.LossTerms)


def trajectory_loss(
    params, key, mod, net, cfg: GramConfig, priors: PriorConfig, x, y, carry, steps, truncate, cap=None
) -> Terms:
    """As svi_pyro.trajectory_loss, in one loop over the supervision steps: each step traces the
    guide's step (`mod.guide_step`), replays the model's step (`mod.model_step`) on the guide's
    noise and on the same transitions (`_SharedCore`: f_L / f_H run once) and scores the model's
    sites there. `cap` (B,) the KL ceiling C_i in nats (kl_cap_weight > 0)."""
    fit = cfg.fit
    observe = "every" if fit.objective == "surrogate" else "last"
    kw = dict(cfg=cfg, priors=priors, steps=steps, truncate=truncate, observe=observe)
    f = functools.partial(net.apply, {"params": params})
    e_x = f(x, method="embed")  # Embedded: e (B, L, D), relation ids
    carry = carry if carry is not None else f(x.shape[0], method="initial_state")  # (h, l): (B, L, D) each

    def step(state, n):
        core, k_guide, k_model = _SharedCore(f), *jax.random.split(jax.random.fold_in(key, n))
        guide_tr = handlers.trace(handlers.seed(mod.guide_step, k_guide)).get_trace(core, e_x, y, state, n, **kw)
        with handlers.trace() as model_tr:
            state, _ = handlers.seed(handlers.replay(mod.model_step, trace=guide_tr), k_model)(
                core.replay(), e_x, y, state, n, **kw
            )
        return state, _step_terms(fit, guide_tr, model_tr, x.shape[0])

    (h, l), (nll, kl, penalty) = jax.lax.scan(step, carry, jnp.arange(steps.start, steps.stop))  # (S, B) (S, B) (S,)
    if fit.kl_cap_weight:  # the KL ceiling: λ·relu(KL of the step − C_i) per puzzle
        if cap is None:
            raise ValueError("fit.kl_cap_weight > 0: pass cap, the ceiling of each puzzle (inference.objective)")
        penalty_cap = fit.kl_cap_weight * jax.nn.relu(kl - cap[None]).sum(0).mean()
    else:
        penalty_cap = 0.0
    nll = nll.sum(0)  # (B,)
    logits = f(h, method="decode")  # (B, L_y, V_y)
    parts = {"nll": nll.mean(), "kl": fit.beta * penalty.sum(), "kl_cap": jnp.asarray(penalty_cap, jnp.float32)}
    return Terms(sum(parts.values()), nll, kl.mean(1), h, l, logits, parts)


class PriorPath(NamedTuple):
    """The prior-path term's inputs for one batch (as svi_pyro's _PriorPath): the first P inputs
    repeated K times (k-major) and each input's candidate targets (objective.prior_path_targets)."""

    x: jax.Array  # (K*P, L_x)
    targets: jax.Array  # (M, L_y) the candidates
    mask: jax.Array  # (P, M) bool: those that count for each input


def prior_path_term(params, key, mod, net, cfg: GramConfig, priors: PriorConfig, pp: PriorPath, carry, steps):
    """−log (1/K) Σ_k max_m p(target_m | τ_k, x) of K prior rollouts of P inputs advanced over
    `steps` from `carry` (None: z_0), with truncated gradients, as svi_pyro's prior path; returns
    the term and the new (detached) carry: (h, l), and with an anchored target (config.prior_path)
    the (K, P) candidates chosen at the first step (which is then not scored); under the "repair"
    target the first step also hands back its log-probabilities (K*P, L_y, V), whose boards the
    host repairs (objective.repair_targets) into the later steps' targets."""
    f = functools.partial(net.apply, {"params": params})
    e_x = f(pp.x, method="embed")  # Embedded: e (K*P, L, D), relation ids
    anchored, first = prior_path(cfg).anchor, carry is None
    state = f(pp.x.shape[0], method="initial_state") if first else tuple(carry[:2])  # (h, l)
    if not cfg.fit.prior_path_noise_grad:  # the prior's noise heads as constants: only the rest learns
        apply = f

        def f(*args, method):
            out = apply(*args, method=method)
            return jax.lax.stop_gradient(out) if method == "prior" else out

    kw = dict(cfg=cfg, priors=priors, steps=steps, truncate=True, observe="none")
    for n in steps:
        state, _ = handlers.seed(mod.model_step, jax.random.fold_in(key, n))(f, e_x, None, state, n, **kw)
    P = pp.mask.shape[0]
    logits = f(state[0], method="decode")  # (K*P, L_y, V)
    logp = jax.nn.log_softmax(logits, -1)  # (K*P, L_y, V)
    if first and prior_path(cfg).target == "repair":  # the drawn boards go to the task's solver on the host
        placeholder = jnp.zeros((logp.shape[0] // P, P), jnp.int32)  # (K, P): set by svi_numpyro.repaired
        return jnp.zeros(()), (*jax.lax.stop_gradient(state), placeholder, jax.lax.stop_gradient(logp))
    if anchored and not first:
        best = carry[2]  # (K, P): the candidates the first step chose
    else:  # the nearest candidate under each rollout, picked without a gradient
        M = pp.targets.shape[0]
        onehot = jax.nn.one_hot(pp.targets, logits.shape[-1], dtype=logp.dtype).reshape(M, -1)  # (M, L_y*V)
        scores = jax.lax.stop_gradient(logp.reshape(logp.shape[0], -1) @ onehot.T).reshape(-1, P, M)  # (K, P, M)
        best = jnp.where(pp.mask[None], scores, -jnp.inf).argmax(-1)  # (K, P)
    chosen = pp.targets[best].reshape(logp.shape[0], -1, 1)  # (K*P, L_y, 1)
    log_p = jnp.take_along_axis(logp, chosen, axis=-1).sum((-2, -1)).reshape(-1, P)  # (K, P), scored with one
    term = -(jax.scipy.special.logsumexp(log_p, 0) - jnp.log(log_p.shape[0])).mean()
    state = jax.lax.stop_gradient(state)
    if anchored:
        return (jnp.zeros(()) if first else term), (*state, best)
    return term, state


def _step_terms(fit, guide_tr, model_tr, B: int):
    """One supervision step's −log p(y | h) (B,), KL (B,) and its free-bits penalty (scalar)."""
    nll, kl, penalty = jnp.zeros(B), jnp.zeros(B), jnp.zeros(())
    for name, site in model_tr.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            nll = nll - site["fn"].log_prob(site["value"])  # (B,)
            continue
        q = guide_tr[name]
        k = balanced_kl(q["fn"], site["fn"], q["value"], fit.kl_balance)  # (B,)
        if fit.kl_reduction == "mean":
            k = k / np.prod(q["value"].shape[-2:])
        kl = kl + k
        penalty = penalty + (jnp.maximum(k, fit.free_bits) if fit.free_bits else k).mean()
    return nll, kl, penalty


class _SharedCore:
    """The networks f as the guide's step sees them, recording each transition; `replay()` gives
    them as the model's step sees them: the same transitions handed back in order (the core is
    shared, as svi_pyro.SharedCore). Calls beyond the recording are computed (the deterministic
    variant has no guide)."""

    def __init__(self, f, recording: Recording | None = None):
        self._f, self._rec = f, recording or Recording()

    def replay(self) -> _SharedCore:
        return _SharedCore(self._f, self._rec.replay())

    def __call__(self, *args, method: str):
        if method != "transition":
            return self._f(*args, method=method)
        return self._rec.call("transition", functools.partial(self._f, method=method), *args)


def balanced_kl(q, p, value, alpha: float):
    """α·KL(sg(q) ‖ p) + (1 − α)·KL(q ‖ sg(p)) per step and puzzle (S, B)."""
    qd, pd = _detached(q), _detached(p)
    if isinstance(_base(q), dist.Delta):

        def kl(a, b):
            return 0.5 * ((_base(a).v - _base(b).v) ** 2).sum((-2, -1))
    elif isinstance(p, LowRankNoise) and isinstance(_base(q), LowRankNoise | dist.Normal):
        kl = kl_to_lowrank  # closed form (models/lowrank_numpyro.py)
    elif type(_base(q)) is type(_base(p)) is dist.Normal:
        kl = kl_divergence
    elif isinstance(_base(q), dist.Normal) and isinstance(_base(p), dist.Laplace):
        kl = _kl_normal_laplace  # closed form, as torch registers it (Pyro's backend uses that one)
    elif type(_base(q)) is type(_base(p)) is dist.Laplace:
        kl = _kl_laplace_laplace
    else:  # no closed form: one-sample Monte Carlo at the guide's draw
        v = jax.lax.stop_gradient(value)

        def kl(a, b):
            at = v if a is qd else value
            return a.log_prob(at) - b.log_prob(at)

    return alpha * kl(qd, p) + (1 - alpha) * kl(q, pd)


def _kl_normal_laplace(q, p):
    """KL(N(μ, σ²) ‖ Laplace(m, b)) summed over the (L, D) event: −H(q) + log 2b + E|X − m| / b."""
    mu, sigma, m, b = _base(q).loc, _base(q).scale, _base(p).loc, _base(p).scale
    d = mu - m
    abs_mean = sigma * jnp.sqrt(2 / jnp.pi) * jnp.exp(-0.5 * (d / sigma) ** 2) + d * jax.scipy.special.erf(
        d / (sigma * jnp.sqrt(2))
    )
    kl = -0.5 * jnp.log(2 * jnp.pi * jnp.e * sigma**2) + jnp.log(2 * b) + abs_mean / b
    return kl.sum((-2, -1))


def _kl_laplace_laplace(q, p):
    """KL(Laplace(m₁, b₁) ‖ Laplace(m₂, b₂)) summed over the (L, D) event (torch's closed form):
    log(b₂ / b₁) + |m₁ − m₂| / b₂ + (b₁ / b₂)·exp(−|m₁ − m₂| / b₁) − 1."""
    m1, b1, m2, b2 = _base(q).loc, _base(q).scale, _base(p).loc, _base(p).scale
    d = jnp.abs(m1 - m2)
    kl = jnp.log(b2 / b1) + d / b2 + (b1 / b2) * jnp.exp(-d / b1) - 1
    return kl.sum((-2, -1))


def _base(d):
    return d.base_dist if isinstance(d, dist.Independent) else d


def _detached(d):
    if isinstance(d, dist.Independent):
        return dist.Independent(_detached(d.base_dist), d.reinterpreted_batch_ndims)
    if isinstance(d, dist.Delta):
        return dist.Delta(jax.lax.stop_gradient(d.v))
    if isinstance(d, dist.StudentT):
        return dist.StudentT(d.df, jax.lax.stop_gradient(d.loc), jax.lax.stop_gradient(d.scale))
    if isinstance(d, LowRankNoise | MixtureNoise):
        return type(d)(*(jax.lax.stop_gradient(getattr(d, k)) for k in d.pytree_data_fields))
    return type(d)(jax.lax.stop_gradient(d.loc), jax.lax.stop_gradient(d.scale))


def head_losses(net, params, h, logits, y):
    pred = jnp.argmax(logits, -1)  # (B, L_y)
    exact = (pred == y).all(-1).astype(jnp.float32)
    acc = (pred == y).mean(-1)
    halt_logit = net.apply({"params": params}, h, method="halt")
    halt = optax.sigmoid_binary_cross_entropy(halt_logit, exact).mean()
    value = ((net.apply({"params": params}, h, method="value") - acc) ** 2).mean()
    return halt, value, exact
