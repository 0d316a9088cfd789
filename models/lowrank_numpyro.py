"""The low-rank noise density of the NumPyro model (PriorConfig.rank > 0) and its KL in closed
form: the twin of gram_ppl.models.lowrank_pyro (no torch here). ε ~ N(μ, diag σ² + W Wᵀ) over an (L, D)
event, the covariance over the flattened L·D entries; ε = μ + W z + σ ⊙ ξ, z ~ N(0, I_r). With
PriorConfig.components = K > 1 a mixture of K of them (MixtureNoise; no closed-form KL)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints


class LowRankNoise(dist.Distribution):
    """N(loc, diag(scale²) + factor factorᵀ) over the (L, D) event; loc, scale (..., L, D), factor
    (..., L, D, r)."""

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 2),
        "scale": constraints.independent(constraints.positive, 2),
        "factor": constraints.independent(constraints.real, 3),
    }
    support = constraints.independent(constraints.real, 2)
    reparametrized_params = ["loc", "scale", "factor"]
    pytree_data_fields = ("loc", "scale", "factor")

    def __init__(self, loc, scale, factor, *, validate_args=None):
        self.loc, self.scale, self.factor = loc, scale, factor
        super().__init__(jnp.shape(loc)[:-2], jnp.shape(loc)[-2:], validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k_z, k_xi = jax.random.split(key)
        shape = tuple(sample_shape) + self.batch_shape
        z = jax.random.normal(k_z, shape + self.factor.shape[-1:])  # (..., r)
        xi = jax.random.normal(k_xi, shape + self.event_shape)  # (..., L, D)
        return self.loc + self.scale * xi + jnp.einsum("...ldr,...r->...ld", self.factor, z)

    def log_prob(self, value):
        n = self.event_shape[0] * self.event_shape[1]
        flat = dist.LowRankMultivariateNormal(
            self.loc.reshape(self.loc.shape[:-2] + (n,)),
            self.factor.reshape(self.factor.shape[:-3] + (n, self.factor.shape[-1])),
            (self.scale**2).reshape(self.scale.shape[:-2] + (n,)),
        )
        return flat.log_prob(value.reshape(value.shape[:-2] + (n,)))

    @property
    def mean(self):
        return self.loc


class MixtureNoise(dist.Distribution):
    """Σ_k π_k N(loc + offset_k, diag(scale²) + factor_k factor_kᵀ) over the (L, D) event, π =
    softmax(logit); loc, scale (..., L, D), factor (..., K, L, D, r), offset (..., K, L, D), logit
    (..., K); `spread` τ scales each component's σ and W_k (lowrank_pyro.MixtureNoise; a draw
    gathers the W_k of its own component)."""

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 2),
        "scale": constraints.independent(constraints.positive, 2),
        "factor": constraints.independent(constraints.real, 4),
        "offset": constraints.independent(constraints.real, 3),
        "logit": constraints.independent(constraints.real, 1),
    }
    support = constraints.independent(constraints.real, 2)
    pytree_data_fields = ("loc", "scale", "factor", "offset", "logit")
    pytree_aux_fields = ("spread",)

    def __init__(self, loc, scale, factor, offset, logit, spread=1.0, *, validate_args=None):
        self.loc, self.scale, self.factor, self.offset, self.logit = loc, scale, factor, offset, logit
        self.spread = spread
        super().__init__(jnp.shape(loc)[:-2], jnp.shape(loc)[-2:], validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k_k, k_z, k_xi = jax.random.split(key, 3)
        shape = tuple(sample_shape) + self.batch_shape
        k = jax.random.categorical(k_k, self.logit, shape=shape)  # (...,)
        z = jax.random.normal(k_z, shape + self.factor.shape[-1:])  # (..., r)
        xi = jax.random.normal(k_xi, shape + self.event_shape)  # (..., L, D)

        def own(a, event):  # component k's slice of a (..., K, *event): a gather, never all K per draw
            axis = -event - 1
            a = jnp.broadcast_to(a, shape + a.shape[axis:])
            return jnp.take_along_axis(a, k.reshape(shape + (1,) * (event + 1)), axis=axis).squeeze(axis)

        spread = jnp.einsum("...ldr,...r->...ld", own(self.factor, 3), z)  # (..., L, D): W_k z
        return jax.lax.stop_gradient(self.loc + own(self.offset, 2) + self.spread * (self.scale * xi + spread))

    def log_prob(self, value):
        def one(part):  # component k's log-density (...,): memory holds one component's Woodbury terms
            offset, factor = part
            return LowRankNoise(self.loc + offset, self.spread * self.scale, self.spread * factor).log_prob(value)

        parts = (jnp.moveaxis(self.offset, -3, 0), jnp.moveaxis(self.factor, -4, 0))  # K first
        per = jnp.moveaxis(jax.lax.map(one, parts), 0, -1)  # (..., K)
        return jax.scipy.special.logsumexp(per + jax.nn.log_softmax(self.logit, -1), -1)

    @property
    def mean(self):
        return self.loc + jnp.einsum("...k,...kld->...ld", jax.nn.softmax(self.logit, -1), self.offset)


def kl_lowrank(q_loc, q_scale, q_factor, p_loc, p_scale, p_factor):
    """KL(N(m_q, diag s_q² + W_q W_qᵀ) ‖ N(m_p, diag s_p² + W_p W_pᵀ)) over the flattened last two
    dims (gram_ppl.models.lowrank_pyro.kl_lowrank, the same formula); q_factor may be None. (...,)."""
    flat = lambda a: a.reshape(a.shape[:-2] + (-1,))  # noqa: E731
    mq, dq, mp, dp = flat(q_loc), flat(q_scale) ** 2, flat(p_loc), flat(p_scale) ** 2
    w = p_factor.reshape(p_factor.shape[:-3] + (-1, p_factor.shape[-1]))  # (..., n, r)
    wd = w / dp[..., None]
    t = lambda a: jnp.swapaxes(a, -1, -2)  # noqa: E731
    chol = jnp.linalg.cholesky(jnp.eye(w.shape[-1]) + t(w) @ wd)  # (..., r, r)
    delta = mq - mp
    b = jax.scipy.linalg.solve_triangular(chol, t(wd) @ delta[..., None], lower=True)  # (..., r, 1)
    quad = (delta**2 / dp).sum(-1) - (b**2).sum((-2, -1))
    trace = (dq / dp).sum(-1) - _trace_solve(chol, t(wd) @ (wd * dq[..., None]))
    logdet_q = jnp.log(dq).sum(-1)
    if q_factor is not None:
        v = q_factor.reshape(q_factor.shape[:-3] + (-1, q_factor.shape[-1]))  # (..., n, r_q)
        g = t(wd) @ v
        trace = trace + (v**2 / dp[..., None]).sum((-2, -1)) - _trace_solve(chol, g @ t(g))
        logdet_q = logdet_q + jnp.linalg.slogdet(jnp.eye(v.shape[-1]) + t(v) @ (v / dq[..., None]))[1]
    logdet_p = jnp.log(dp).sum(-1) + 2 * jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    return 0.5 * (trace + quad - mq.shape[-1] + logdet_p - logdet_q)


def _trace_solve(chol, m):
    """tr(C⁻¹ M) for C = chol cholᵀ."""
    x = jax.scipy.linalg.cho_solve((chol, True), m)
    return jnp.trace(x, axis1=-2, axis2=-1)


def kl_to_lowrank(q, p: LowRankNoise):
    """KL(q ‖ p) for q a LowRankNoise or a Normal over the same (L, D) event (.to_event(2))."""
    if isinstance(q, LowRankNoise):
        return kl_lowrank(q.loc, q.scale, q.factor, p.loc, p.scale, p.factor)
    base = q.base_dist if isinstance(q, dist.Independent) else q
    if not isinstance(base, dist.Normal):
        raise NotImplementedError
    return kl_lowrank(base.loc, base.scale, None, p.loc, p.scale, p.factor)
