"""Sampling temperature τ for prior rollouts, as an effect handler over the model's noise sites.

τ scales the prior's σ (and a low-rank prior's directions W) of every transition noise site (tagged as noise: gram_ppl/sites.py) at sampling time only: τ < 1 trades
diversity for precision, τ > 1 the reverse, τ = 1 is the model itself, and τ = 0 takes the prior
mean μ_θ(u_t) (a Delta, so every trajectory of a puzzle is the same; under a mixture prior,
priors.components, τ scales each component's spread and τ = 0 draws a component's centre
μ + o_k). The model file is untouched: the handler rewrites the site's distribution before it is sampled, in Pyro (`pyro_temper`) and in
NumPyro (`numpyro_temper`, which reaches inside `scan`). Training never uses it.
"""

from __future__ import annotations

import math

from gram_ppl import sites


def check_temperature(tau: float) -> float:
    """τ as a float; a clear error for a negative, NaN or infinite one."""
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number >= 0, got {tau!r}") from None
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {tau!r}")
    return tau


def per_step_temperatures(cfg, temperature) -> tuple[float, ...]:
    """The τ of each step a backend's prior_steps applies, checked: `temperature` one τ or a
    sequence of per-step τ (config.temperature_schedule, for a rollout's depth; past its end the
    last repeats); None the run's constant τ, an error for a run with a schedule
    (config.sample_temperature_end other than its start), which needs the rollout's depth."""
    from gram_ppl.config import sample_temperature, sample_temperature_end

    if temperature is None:
        if sample_temperature_end(cfg) != sample_temperature(cfg):
            raise ValueError("the run samples with a temperature schedule (fit.sample_temperature_end): "
                             "pass config.temperature_schedule(cfg, depth) for the rollout's depth")  # fmt: skip
        temperature = sample_temperature(cfg)
    taus = tuple(temperature) if isinstance(temperature, tuple | list) else (temperature,)
    if not taus:
        raise ValueError("a per-step temperature sequence needs at least one τ")
    return tuple(check_temperature(t) for t in taus)


def _base(fn, dists):
    """The density under a `.to_event` wrapper and the event dims it adds (0: none)."""
    return (fn.base_dist, fn.reinterpreted_batch_ndims) if isinstance(fn, dists.Independent) else (fn, 0)


def _tempered(fn, tau: float, dists):
    """`fn` (a `.to_event(2)` noise density) with its scale multiplied by τ (τ = 0: its location)."""
    base, ndims = _base(fn, dists)
    if isinstance(base, dists.Delta):  # mean_only: ε is already the location
        return fn
    if hasattr(base, "offset"):  # a mixture (priors.components): σ and W_k scale, the offsets o_k stay
        return type(base)(base.loc, base.scale, base.factor, base.offset, base.logit, tau * base.spread)
    if hasattr(base, "factor"):  # the low-rank prior (priors.rank): its directions W scale with σ
        return (
            dists.Delta(base.loc, event_dim=2)
            if tau == 0
            else type(base)(base.loc, tau * base.scale, tau * base.factor)
        )
    if tau == 0:
        new = dists.Delta(base.loc)
    elif isinstance(base, dists.StudentT):
        new = dists.StudentT(base.df, base.loc, tau * base.scale)
    else:
        new = type(base)(base.loc, tau * base.scale)
    return new.to_event(ndims) if ndims else new


def pyro_temper(tau: float):
    """A Pyro handler: `with pyro_temper(0.5): model(...)` samples the noise at temperature 0.5."""
    import pyro.distributions as dist
    from pyro.poutine.messenger import Messenger

    tau = check_temperature(tau)

    class Temper(Messenger):
        def _pyro_sample(self, msg):
            if tau != 1 and sites.is_noise(msg) and not msg["is_observed"]:
                msg["fn"] = _tempered(msg["fn"], tau, dist)

    return Temper()


def numpyro_temper(fn=None, tau: float = 1.0):
    """A NumPyro handler: `numpyro_temper(model, tau=0.5)(...)`. A `substitute_fn`, because NumPyro
    carries substitutions into `scan` bodies (where the noise sites live) and draws them there with
    the site's own key; the site's density is left as it is. `tau` may be a traced JAX scalar (a
    per-step schedule under one compiled step): the draw is then moved toward the site's location,
    loc + τ·(ε - loc), the same law as scaling σ for these location-scale families (τ = 0: loc)."""
    import numpyro.distributions as dist
    from numpyro import handlers

    traced = not isinstance(tau, int | float)
    tau = tau if traced else check_temperature(tau)

    def draw(site):
        if (not traced and tau == 1) or not sites.is_noise(site) or site.get("is_observed"):
            return None
        key = site["kwargs"].get("rng_key")
        if key is None:
            raise RuntimeError(f"numpyro_temper needs a seeded model (site {site['name']} has no key)")
        shape = site["kwargs"].get("sample_shape", ())
        if not traced:
            return _tempered(site["fn"], tau, dist).sample(key, shape)
        base, _ = _base(site["fn"], dist)
        if isinstance(base, dist.Delta):  # mean_only: ε is already the location
            return None
        return base.loc + tau * (site["fn"].sample(key, shape) - base.loc)

    return handlers.substitute(fn, substitute_fn=draw)
