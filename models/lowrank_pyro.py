"""The low-rank noise density of the Pyro model (PriorConfig.rank > 0) and its KL in closed form.

ε ~ N(μ, diag σ² + W Wᵀ) over an (L, D) event whose covariance couples all L·D entries: W
(L, D, r) holds r directions shared by every position and channel, so a few correlated
directions (which digit, which grid) can be wider than the per-entry σ. Equivalently
ε = μ + W z + σ ⊙ ξ with z ~ N(0, I_r), ξ ~ N(0, I). With PriorConfig.components = K > 1 a
mixture of K of them, Σ_k π_k N(μ + o_k, diag σ² + W_k W_kᵀ) (MixtureNoise: its KL has no closed
form, so the objectives take their one-sample Monte Carlo estimate). The NumPyro twin is
gram_ppl.models.lowrank_numpyro.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions import Independent, Normal, register_kl


class LowRankNoise(TorchDistribution):
    """N(loc, diag(scale²) + factor factorᵀ) over the (L, D) event; loc, scale (..., L, D), factor
    (..., L, D, r)."""

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 2),
        "scale": constraints.independent(constraints.positive, 2),
        "factor": constraints.independent(constraints.real, 3),
    }
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, scale, factor, validate_args=None):
        self.loc, self.scale, self.factor = loc, scale, factor
        super().__init__(loc.shape[:-2], loc.shape[-2:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return LowRankNoise(self.loc.expand(shape + self.event_shape), self.scale.expand(shape + self.event_shape),
                            self.factor.expand(shape + self.factor.shape[-3:]))  # fmt: skip

    def rsample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape
        z = torch.randn(shape + self.factor.shape[-1:], dtype=self.loc.dtype, device=self.loc.device)  # (..., r)
        xi = torch.randn(shape + self.event_shape, dtype=self.loc.dtype, device=self.loc.device)  # (..., L, D)
        return self.loc + self.scale * xi + torch.einsum("...ldr,...r->...ld", self.factor, z)

    def log_prob(self, value):
        flat = torch.distributions.LowRankMultivariateNormal(
            self.loc.flatten(-2), self.factor.flatten(-3, -2), self.scale.flatten(-2) ** 2, validate_args=False
        )  # over the L·D entries (Woodbury inside)
        return flat.log_prob(value.flatten(-2))  # (...,)

    @property
    def mean(self):
        return self.loc


class MixtureNoise(TorchDistribution):
    """Σ_k π_k N(loc + offset_k, diag(scale²) + factor_k factor_kᵀ) over the (L, D) event, π =
    softmax(logit); loc, scale (..., L, D), factor (..., K, L, D, r), offset (..., K, L, D), logit
    (..., K); `spread` τ (sampling temperature, inference/tempering.py) scales each component's
    σ and W_k, not its offset. A draw picks its component k ~ π (not reparameterisable: the model
    only scores it) and gathers the W_k of its own component, never the K directions of every draw."""

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 2),
        "scale": constraints.independent(constraints.positive, 2),
        "factor": constraints.independent(constraints.real, 4),
        "offset": constraints.independent(constraints.real, 3),
        "logit": constraints.independent(constraints.real, 1),
    }
    support = constraints.independent(constraints.real, 2)

    def __init__(self, loc, scale, factor, offset, logit, spread=1.0, validate_args=None):
        self.loc, self.scale, self.factor, self.offset, self.logit = loc, scale, factor, offset, logit
        self.spread = spread  # a float: the shared parameters stay views, never copied per draw
        super().__init__(loc.shape[:-2], loc.shape[-2:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        tail = lambda a, n: a.expand(shape + a.shape[-n:])  # noqa: E731
        return MixtureNoise(tail(self.loc, 2), tail(self.scale, 2), tail(self.factor, 4), tail(self.offset, 3),
                            tail(self.logit, 1), self.spread)  # fmt: skip

    def sample(self, sample_shape=()):
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logit).sample(sample_shape)  # (...,)
            z = torch.randn(shape + self.factor.shape[-1:], dtype=self.loc.dtype, device=self.loc.device)  # (..., r)
            xi = torch.randn(shape + self.event_shape, dtype=self.loc.dtype, device=self.loc.device)  # (..., L, D)
            factor = self.factor.expand(shape + self.factor.shape[-4:])  # (..., K, L, D, r): a view
            offset = self.offset.expand(shape + self.offset.shape[-3:])  # (..., K, L, D)
            shift = torch.zeros_like(xi)  # (..., L, D): o_k + τ W_k z, one component at a time
            for j in k.unique().tolist():  # never materialises the K directions of every draw
                at = (k == j).nonzero(as_tuple=True)
                shift[at] = offset[(*at, j)] + self.spread * torch.einsum("mldr,mr->mld", factor[(*at, j)], z[at])
            return self.loc + self.spread * self.scale * xi + shift

    def log_prob(self, value):
        per = torch.stack(  # (..., K): one component at a time, so memory holds one component's Woodbury terms
            [LowRankNoise(self.loc + self.offset[..., k, :, :], self.spread * self.scale,
                          self.spread * self.factor[..., k, :, :, :]).log_prob(value)
             for k in range(self.logit.shape[-1])], -1)  # fmt: skip
        return torch.logsumexp(per + torch.log_softmax(self.logit, -1), -1)  # (...,)

    @property
    def mean(self):
        return self.loc + torch.einsum("...k,...kld->...ld", torch.softmax(self.logit, -1), self.offset)


def kl_lowrank(q_loc, q_scale, q_factor, p_loc, p_scale, p_factor):
    """KL(N(m_q, diag s_q² + W_q W_qᵀ) ‖ N(m_p, diag s_p² + W_p W_pᵀ)) over the flattened last two
    dims, by Woodbury and the determinant lemma (only r × r matrices are factorised); q_factor may
    be None (a diagonal q). Shapes: loc, scale (..., L, D), factor (..., L, D, r). Returns (...,)."""
    mq, dq, mp, dp = q_loc.flatten(-2), q_scale.flatten(-2) ** 2, p_loc.flatten(-2), p_scale.flatten(-2) ** 2
    w = p_factor.flatten(-3, -2)  # (..., n, r)
    wd = w / dp[..., None]  # D_p⁻¹ W_p
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    chol = torch.linalg.cholesky(eye + w.transpose(-1, -2) @ wd)  # C_p = I + W_pᵀ D_p⁻¹ W_p (..., r, r)
    delta = mq - mp  # (..., n)
    b = torch.linalg.solve_triangular(chol, (wd.transpose(-1, -2) @ delta[..., None]), upper=False)  # (..., r, 1)
    quad = (delta**2 / dp).sum(-1) - b.square().sum((-2, -1))  # δᵀ Σ_p⁻¹ δ
    m = wd.transpose(-1, -2) @ (wd * dq[..., None])  # W_pᵀ D_p⁻¹ D_q D_p⁻¹ W_p (..., r, r)
    trace = (dq / dp).sum(-1) - _trace_solve(chol, m)  # tr(Σ_p⁻¹ D_q)
    logdet_q = torch.log(dq).sum(-1)
    if q_factor is not None:
        v = q_factor.flatten(-3, -2)  # (..., n, r_q)
        g = wd.transpose(-1, -2) @ v  # (..., r, r_q)
        trace = trace + (v**2 / dp[..., None]).sum((-2, -1)) - _trace_solve(chol, g @ g.transpose(-1, -2))
        eye_q = torch.eye(v.shape[-1], dtype=v.dtype, device=v.device)
        logdet_q = logdet_q + torch.logdet(eye_q + v.transpose(-1, -2) @ (v / dq[..., None]))
    logdet_p = torch.log(dp).sum(-1) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + quad - mq.shape[-1] + logdet_p - logdet_q)


def _trace_solve(chol, m):
    """tr(C⁻¹ M) for C = chol cholᵀ."""
    return torch.diagonal(torch.cholesky_solve(m, chol), dim1=-2, dim2=-1).sum(-1)


@register_kl(LowRankNoise, LowRankNoise)
def _kl_lowrank_lowrank(q, p):
    if all(torch.equal(a, b) for a, b in ((q.loc, p.loc), (q.scale, p.scale), (q.factor, p.factor))):
        return q.loc.new_zeros(q.batch_shape)  # the prior against itself (a step the guide leaves): 0, gradient 0
    return kl_lowrank(q.loc, q.scale, q.factor, p.loc, p.scale, p.factor)


@register_kl(Independent, LowRankNoise)
def _kl_diagonal_lowrank(q, p):
    if not (isinstance(q.base_dist, Normal) and q.reinterpreted_batch_ndims == 2):
        raise NotImplementedError  # the caller falls back to a Monte Carlo estimate
    return kl_lowrank(q.base_dist.loc, q.base_dist.scale, None, p.loc, p.scale, p.factor)
