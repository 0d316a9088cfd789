"""The Pyro loss: trace the guide, replay the model on its noise, read the terms off the two
traces (inference/svi_pyro.py's docstring tells the objective). Used by the trainer, the
fine-tuning terms and the diagnostics."""

from __future__ import annotations

from typing import NamedTuple

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from gram_ppl import sites
from gram_ppl.config import GramConfig, PriorConfig
from gram_ppl.inference.objective import Recording
from gram_ppl.models.lowrank_pyro import LowRankNoise  # noqa: F401  (registers its closed-form KL with torch)


class LossTerms(NamedTuple):
    loss: torch.Tensor  # scalar that is minimised: the sum of `parts`
    nll: torch.Tensor  # (B,) −log p(y | h) summed over the observed sites
    kl: torch.Tensor  # (S,) KL of each supervision step, averaged over puzzles (nats)
    h: torch.Tensor  # (B, L, D) final high-level state (attached)
    l: torch.Tensor  # (B, L, D) final low-level state (attached)
    logits: torch.Tensor  # (B, L_y, V_y) decoder logits of the last observed step
    parts: dict[str, torch.Tensor]  # the loss's named, weighted terms: nll, kl (β·KL), kl_cap


class EmbedOnce:
    """The networks with e_x = embed(x) computed once for a rollout of the same inputs `x`
    (B, L_x) (each supervision step calls the model again); everything else is the network's."""

    def __init__(self, net, x: torch.Tensor):
        self._net, self._x = net, x
        with torch.no_grad():
            self._e = net.embed(x)  # Embedded: e (B, L, D), relation ids

    def __getattr__(self, name):
        return getattr(self._net, name)

    def embed(self, x):
        return self._e if x is self._x else self._net.embed(x)


class SharedCore:
    """The networks as the guide sees them, recording its deterministic updates (the input
    embedding and every transition, in call order); `replay()` gives the networks as the model,
    replayed on the guide's noise, sees them: the same updates handed back in the same order
    (the core is shared, §3, so training runs f_L / f_H once, not twice). Calls beyond the
    recording are computed (the deterministic variant has no guide). Everything else is the
    wrapped network's, so the model file never knows."""

    def __init__(self, net, recording: Recording | None = None):
        self._net, self._rec = net, recording or Recording()

    def __getattr__(self, name):
        return getattr(self._net, name)

    def replay(self) -> SharedCore:
        return SharedCore(self._net, self._rec.replay())

    def embed(self, x):
        return self._rec.call("embed", self._net.embed, x)

    def transition(self, h, l, e_x):
        return self._rec.call("transition", self._net.transition, h, l, e_x)


def trajectory_loss(
    mod, net, cfg: GramConfig, priors: PriorConfig, x, y, carry, steps, truncate, cap=None
) -> LossTerms:
    """Trace the guide, replay the model on its noise, and assemble the loss terms; `cap` (B,)
    the KL ceiling C_i of each puzzle in nats (inference/objective.py), used when kl_cap_weight > 0."""
    fit = cfg.fit
    observe = "every" if fit.objective == "surrogate" else "last"
    kw = dict(cfg=cfg, priors=priors, carry=carry, steps=steps, truncate=truncate, observe=observe)
    shared = SharedCore(net)
    guide_tr = poutine.trace(mod.guide).get_trace(x, y, net=shared, **kw)
    model_tr = poutine.trace(poutine.replay(mod.model, trace=guide_tr)).get_trace(x, y, net=shared.replay(), **kw)
    nll = x.new_zeros(x.shape[0], dtype=torch.float32)
    kl = {n: x.new_zeros(x.shape[0], dtype=torch.float32) for n in steps}
    penalty = x.new_zeros((), dtype=torch.float32)
    for name, site in model_tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            nll = nll - site["fn"].log_prob(site["value"])  # (B,)
            logits = site["fn"].base_dist.logits
            continue
        q = guide_tr.nodes[name]
        k = balanced_kl(q["fn"], site["fn"], q["value"], fit.kl_balance)  # (B,)
        if fit.kl_reduction == "mean":
            k = k / q["value"][0].numel()
        if sites.step_of(site) in kl:  # transition noise: credited to its supervision step (its tag)
            kl[sites.step_of(site)] += k
        penalised = torch.clamp(k, min=fit.free_bits) if fit.free_bits else k  # free bits, per transition
        penalty = penalty + penalised.mean()
    if fit.kl_cap_weight:  # the KL ceiling: λ·relu(KL of the step − C_i) per puzzle
        if cap is None:
            raise ValueError("fit.kl_cap_weight > 0: pass cap, the ceiling of each puzzle (inference.objective)")
        over = sum(torch.relu(k - cap) for k in kl.values())  # (B,)
        penalty_cap = fit.kl_cap_weight * over.mean()
    else:
        penalty_cap = 0.0
    h, l = model_tr.nodes["_RETURN"]["value"]
    parts = {"nll": nll.mean(), "kl": fit.beta * penalty, "kl_cap": torch.as_tensor(penalty_cap)}
    kl_steps = torch.stack([v.mean() for v in kl.values()]).detach()  # (S,)
    return LossTerms(sum(parts.values()), nll, kl_steps, h, l, logits, parts)


def balanced_kl(q, p, value, alpha: float) -> torch.Tensor:
    """α·KL(sg(q) ‖ p) + (1 − α)·KL(q ‖ sg(p)) per puzzle (B,), summed over the event."""
    qd, pd = _detached(q), _detached(p)
    if isinstance(_base(q), dist.Delta):  # mean-only ablation: ½‖μ_q − μ_p‖²

        def kl(a, b):
            return 0.5 * (_base(a).v - _base(b).v).pow(2).sum((-2, -1))
    else:
        try:
            torch.distributions.kl_divergence(qd, p)
            kl = torch.distributions.kl_divergence
        except NotImplementedError:  # no closed form: one-sample Monte Carlo at the guide's draw
            v = value.detach()

            def kl(a, b):
                return a.log_prob(v if a is qd else value) - b.log_prob(v if a is qd else value)

    return alpha * kl(qd, p) + (1 - alpha) * kl(q, pd)


def _base(d):
    return d.base_dist if isinstance(d, torch.distributions.Independent) else d


def _detached(d):
    """The same distribution with its parameters cut from the graph."""
    if isinstance(d, torch.distributions.Independent):
        return dist.Independent(_detached(d.base_dist), d.reinterpreted_batch_ndims)
    return type(d)(**{k: getattr(d, k).detach() for k in d.arg_constraints})


def head_losses(net, h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor):
    """ACT halt (BCE against exact match) and LPRM value (squared error against token accuracy)
    losses; the heads read a detached h, so no gradient reaches the core. Also returns exact."""
    pred = logits.detach().argmax(-1)  # (B, L_y)
    exact = (pred == y).all(-1).float()  # (B,)
    acc = (pred == y).float().mean(-1)  # (B,)
    halt = F.binary_cross_entropy_with_logits(net.halt(h), exact)
    value = F.mse_loss(net.value(h), acc)
    return halt, value, exact
