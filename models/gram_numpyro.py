"""GRAM as a NumPyro probabilistic program: the same model and guide as models/gram_pyro.py.

The generative story, the PRIORS block and its semantics, the variants and every departure from
the paper are those of models/gram_pyro.py (read its docstring first). What differs is NumPyro's
idiom (ppl-notes §1, §6):
- the networks are flax linen modules (gram_ppl/networks/flax_nets.py) registered once with
  `flax_module("gram", ...)` before the recursion, shared by model and guide;
- the supervision steps run in `numpyro.contrib.control_flow.scan`, with the plate inside the
  step (a plate around scan is not allowed);
- scanned sites come back stacked, step first: Pyro's `eps_{n}_{t}` (B, L, D) is here `eps_{t}`
  (S, B, L, D) at index n - steps[0], and Pyro's `y_{n}` is `y` (S, B, L_y).
- inside a supervision step, transitions before the last carry no gradient when `truncate`
  (stop_gradient; Pyro turns autograd off there).
- a supervision step is its own function (`model_step`, `guide_step`; `model` and `guide` scan
  them), so training can run one loop in which each step traces the guide's step and replays the
  model's step on the same transitions (inference/svi_numpyro.py: f_L / f_H run once per step, as
  Pyro's `svi_pyro.SharedCore` does).
- When one scan spans steps on both sides of `FitConfig.guide_steps`, the guide picks the
  posterior or the prior per step with `jnp.where` on their parameters, which needs the guide in
  the prior's family (the default); training (one supervision step per call) has no such limit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.control_flow import scan
from numpyro.contrib.module import flax_module

from gram_ppl import sites
from gram_ppl.config import PriorConfig, guide_family
from gram_ppl.models.lowrank_numpyro import LowRankNoise, MixtureNoise

# ---- PRIORS: the block in models/priors.py (both backends read it; edit it there) ----------
from gram_ppl.models.priors import PRIORS  # noqa: E402


def noise_dist(priors: PriorConfig, loc, scale, *shared, variant: str = "gram", family: str | None = None):
    """The density of one transition's noise over the (L, D) state of each puzzle, in `family`
    (default the prior's, priors.family; studentt with priors.df). With `shared`, the prior's
    parameters shared by every input (GramNet.prior): a factor W (its low-rank directions,
    priors.rank) gives N(loc, diag scale² + W Wᵀ) over the flattened L·D entries; W_k, offsets o_k
    and logits (priors.components) give Σ_k π_k N(loc + o_k, diag scale² + W_k W_kᵀ)."""
    family = family or priors.family
    if variant == "mean_only":
        return dist.Delta(loc).to_event(2)
    if len(shared) == 3:
        return MixtureNoise(loc, scale, *shared)
    if shared:
        return LowRankNoise(loc, scale, *shared)
    if family == "studentt":
        return dist.StudentT(priors.df, loc, scale).to_event(2)
    return {"normal": dist.Normal, "laplace": dist.Laplace}[family](loc, scale).to_event(2)


def model(x, y=None, *, net, cfg, priors=PRIORS, carry=None, steps=None, truncate=True, observe="every"):
    """p_θ(τ, y | x) over supervision steps `steps` (default: all N_sup), from `carry` (default z_0);
    returns (h, l). y is observed after every step, or only after the last (observe="last"), or not
    at all (observe="none": prior rollouts)."""
    steps = range(cfg.fit.n_sup) if steps is None else steps
    f = _register(net)
    e_x = f(x, method="embed")  # e (B, L, D), relation ids
    carry = carry if carry is not None else f(x.shape[0], method="initial_state")  # (h, l): (B, L, D) each
    kw = dict(cfg=cfg, priors=priors, steps=steps, truncate=truncate, observe=observe)
    (h, l), _ = scan(functools.partial(model_step, f, e_x, y, **kw), carry, jnp.arange(steps.start, steps.stop))
    return h, l


def model_step(f, e_x, y, state, n, *, cfg, priors, steps, truncate, observe):
    """One supervision step n of the model from state = (h, l): T transitions, each followed by
    the noise ε_t ~ p_θ(ε_t | u_t), then y ~ p_θ(y | h). Returns ((h, l), None)."""
    variant, (h, l) = cfg.fit.variant, state
    with numpyro.plate("puzzles", h.shape[0]):
        for t in range(cfg.fit.T):
            cut = truncate and t < cfg.fit.T - 1
            u, l = _cut(f(h, l, e_x, method="transition"), cut)  # (B, L, D) each
            if variant == "deterministic":
                h = u
            else:
                prior = _where_guided(_cut(f(u, method="prior"), cut), _guided(cfg.fit, steps, n, t))
                prior = noise_dist(priors, *prior, variant=variant)
                eps = numpyro.sample(f"eps_{t}", prior, infer=sites.noise(None, t))  # the step axis: the scan's
                h = u + eps  # (B, L, D)
        if observe != "none":
            y_dist = dist.Categorical(logits=f(h, method="decode")).to_event(1)  # (B,) over (L_y,)
            obs_dist = y_dist.mask(n == steps[-1]) if observe == "last" else y_dist
            numpyro.sample("y", obs_dist, obs=y, infer=sites.observation(None))
    return (h, l), None


def guide(x, y, *, net, cfg, priors=PRIORS, carry=None, steps=None, truncate=True, observe="every"):
    """q_φ(τ | x, y): the model's transitions with ε_t ~ q_φ(ε_t | u_t, y) (prior where off)."""
    if cfg.fit.variant == "deterministic":
        return
    steps = range(cfg.fit.n_sup) if steps is None else steps
    f = _register(net)
    e_x = f(x, method="embed")  # e (B, L, D), relation ids
    carry = carry if carry is not None else f(x.shape[0], method="initial_state")
    kw = dict(cfg=cfg, priors=priors, steps=steps, truncate=truncate, observe=observe)
    scan(functools.partial(guide_step, f, e_x, y, **kw), carry, jnp.arange(steps.start, steps.stop))


def guide_step(f, e_x, y, state, n, *, cfg, priors, steps, truncate, observe):
    """One supervision step n of the guide from state = (h, l). Returns ((h, l), None)."""
    variant, (h, l) = cfg.fit.variant, state
    if variant == "deterministic":
        return (h, l), None
    with numpyro.plate("puzzles", h.shape[0]):
        for t in range(cfg.fit.T):
            cut = truncate and t < cfg.fit.T - 1
            u, l = _cut(f(h, l, e_x, method="transition"), cut)  # (B, L, D) each
            on = _guided(cfg.fit, steps, n, t)
            prior = _where_guided(_cut(f(u, method="prior"), cut), on)  # the model's prior
            if on is False:
                q = noise_dist(priors, *prior, variant=variant)
            else:
                post = _cut(f(u, y, method="posterior"), cut)
                family = guide_family(cfg.fit, priors)  # q_φ in the prior's family unless fit.guide_family says
                if on is not True:  # a traced step index: mix parameters per step
                    if family != priors.family and variant != "mean_only":
                        raise ValueError("one scan across guide_steps needs the guide in the prior's family")
                    if len(prior) > 2:  # a low-rank prior or a mixture: the guide's q has W = 0 (and o_k = 0)
                        post = (*post, *(jnp.zeros_like(a) for a in prior[2:4]), *prior[4:])
                    post = tuple(jnp.where(on, q, p) for q, p in zip(post, prior, strict=True))
                q = noise_dist(priors, *post, variant=variant, family=family)
            eps = numpyro.sample(f"eps_{t}", q, infer=sites.noise(None, t))
            h = u + eps  # (B, L, D)
    return (h, l), None


def _register(net):
    """The flax networks as a NumPyro module "gram" (registered outside the scan)."""
    dummy_x = jnp.ones((1, net.x_len), jnp.int32)
    return flax_module("gram", net, dummy_x, jnp.ones((1, net.y_len), jnp.int32))


def _guided(fit, steps, n, t):
    """True / False when known from Python values, else a traced boolean of the step index n."""
    if fit.guide_transitions != "all" and t != fit.T - 1:
        return False
    if fit.guide_steps == 0 or steps[-1] < fit.guide_steps:
        return True
    if steps[0] >= fit.guide_steps:
        return False
    return n < fit.guide_steps


def _where_guided(prior, on):
    """The prior's (loc, scale[, W[, o_k, logits]]) with a low-rank prior's W (priors.rank) or a
    mixture's W_k and o_k (priors.components) only where the guide acts (`on`: True, False or a
    traced boolean of the step; elsewhere W = 0 and o_k = 0: the diagonal prior)."""
    if len(prior) < 3 or on is True:
        return prior
    if on is False:
        return prior[:2]
    return (*prior[:2], *(jnp.where(on, a, 0.0) for a in prior[2:4]), *prior[4:])


def _cut(values, cut):
    return tuple(jax.lax.stop_gradient(v) for v in values) if cut else values
