"""The GRAM networks in flax linen: the same maps as torch_nets.py, module for module and name
for name, so weights convert one to one (gram_ppl.networks.convert) and the forward passes agree
to float32 rounding. Shapes: B puzzles, L positions (prefix tokens included), D = NetConfig.dim.

Methods of `GramNet` (call them through `GramNet.apply({"params": params}, ..., method=...)`, or the
apply function numpyro's `flax_module` returns): embed, transition, prior, posterior, decode,
halt, value, initial_state. z_0 is the parameter "z0", drawn once from N(0, init_scale² I) at
init (or copied from a torch checkpoint), behind a stop_gradient and excluded from weight decay:
a constant, like the torch buffer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gram_ppl.config import GramConfig, NetConfig, PriorConfig, net_in_force
from gram_ppl.networks import FACTOR_INIT, Embedded, check_mixer
from gram_ppl.tasks.base import relation_count, relation_ids, uses_relation_bias

EPS = float(np.finfo(np.float32).eps)  # torch.nn.functional.rms_norm's default eps in float32


def rms_norm(x):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + EPS)


class SwiGLU(nn.Module):
    """Position-wise SwiGLU MLP: d_in -> hidden -> d_out."""

    hidden: int
    d_out: int
    dtype: Any = None  # the products' dtype (NetConfig.precision); None: the input's

    def setup(self):
        self.w_in = nn.Dense(2 * self.hidden, use_bias=False, dtype=self.dtype)
        self.w_out = nn.Dense(self.d_out, use_bias=False, dtype=self.dtype)

    def __call__(self, x):
        a, gate = jnp.split(self.w_in(x), 2, axis=-1)  # (..., hidden) each
        return self.w_out(nn.silu(gate) * a)  # (..., d_out)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention over the L positions, with the relation bias when
    `relations` (L rows of L ids, `num_ids` kinds) is given; ids `rel` (B, L, L) given with the
    input replace them (see torch_nets.Attention)."""

    dim: int
    heads: int
    relations: tuple | None = None
    num_ids: int = 0
    dtype: Any = None

    def setup(self):
        self.qkv = nn.Dense(3 * self.dim, use_bias=False, dtype=self.dtype)
        self.out = nn.Dense(self.dim, use_bias=False, dtype=self.dtype)
        if self.relations is not None:
            self.rel = self.param("rel", nn.initializers.zeros, (self.num_ids, self.heads))  # (R, H)

    def __call__(self, x, rel=None):
        B, L, D = x.shape
        H = self.heads
        q, k, v = self.qkv(x).reshape(B, L, 3, H, D // H).transpose(2, 0, 3, 1, 4)  # (B, H, L, D/H) each
        logits = q @ k.swapaxes(-1, -2) / math.sqrt(D // H)  # (B, H, L, L)
        if self.relations is not None:
            ids = np.asarray(self.relations) if rel is None else rel  # (L, L) or (B, L, L)
            logits = logits + jnp.moveaxis(self.rel[ids], -1, -3)  # + (H, L, L) or (B, H, L, L)
        att = jax.nn.softmax(logits, axis=-1)  # (B, H, L, L)
        return self.out((att @ v).transpose(0, 2, 1, 3).reshape(B, L, D))  # (B, L, D)


class TokenMLP(nn.Module):
    """MLP-mixer token mixing: a SwiGLU across the L positions."""

    length: int
    expansion: float
    dtype: Any = None

    def setup(self):
        self.mlp = SwiGLU(max(1, int(self.expansion * self.length)), self.length, self.dtype)

    def __call__(self, x):
        return self.mlp(x.swapaxes(1, 2)).swapaxes(1, 2)  # (B, L, D)


class Block(nn.Module):
    """Post-norm residual block: token mixer then SwiGLU, each followed by RMSNorm."""

    cfg: NetConfig
    length: int
    relations: tuple | None = None
    num_ids: int = 0

    def setup(self):
        c = self.cfg
        check_mixer(c)
        dtype = jnp.bfloat16 if c.precision == "bfloat16" else None  # products only: the residual stays float32
        if c.mixer == "attention":
            self.mix = Attention(c.dim, c.heads, self.relations, self.num_ids, dtype)
        else:
            self.mix = TokenMLP(self.length, c.expansion, dtype)
        self.mlp = SwiGLU(int(c.expansion * c.dim), c.dim, dtype)

    def __call__(self, x, rel=None):
        mixed = self.mix(x, rel) if self.cfg.mixer == "attention" else self.mix(x)  # (B, L, D)
        x = rms_norm(x + mixed)  # (B, L, D)
        return rms_norm(x + self.mlp(x))  # (B, L, D)


class Reasoner(nn.Module):
    """One recursive update, f(state, injection) = blocks(state + injection): f_L or f_H."""

    cfg: NetConfig
    length: int
    relations: tuple | None = None
    num_ids: int = 0

    def setup(self):
        self.blocks = [Block(self.cfg, self.length, self.relations, self.num_ids) for _ in range(self.cfg.layers)]

    def __call__(self, state, injection, rel=None):
        x = state + injection  # (B, L, D)
        for block in self.blocks:
            x = block(x, rel)
        return x


class Guidance(nn.Module):
    """Location and scale of a transition-noise density (see torch_nets.Guidance)."""

    dim: int
    hidden: int
    priors: PriorConfig
    scale_mode: str
    zero_mean: bool

    def setup(self):
        self.net = SwiGLU(self.hidden, 2 * self.dim)
        if self.scale_mode == "learned":
            self.raw_scale = self.param("raw_scale", nn.initializers.zeros, ())

    def __call__(self, inp):
        p = self.priors
        log_lo, log_hi = math.log(p.min_scale), math.log(p.max_scale)
        frac = (math.log(p.scale) - log_lo) / max(log_hi - log_lo, 1e-12)
        bias0 = math.log(max(frac, 1e-6) / max(1 - frac, 1e-6))
        loc, raw = jnp.split(self.net(inp), 2, axis=-1)  # (B, L, D) each
        if self.zero_mean:
            loc = jnp.zeros_like(loc)
        if self.scale_mode == "fixed":
            return loc, jnp.full_like(loc, p.scale)
        if self.scale_mode == "learned":
            raw = jnp.broadcast_to(self.raw_scale, loc.shape)
        return loc, jnp.exp(log_lo + (log_hi - log_lo) * jax.nn.sigmoid(raw + bias0))


class GramNet(nn.Module):
    """All GRAM networks for one task (see torch_nets.GramNet for the maps)."""

    cfg: NetConfig
    priors: PriorConfig
    K: int  # low-level updates per transition
    zero_mean: bool  # the noise-only ablation: μ ≡ 0 in prior and posterior
    x_vocab: int
    y_vocab: int
    x_len: int
    y_len: int
    positions: tuple  # one tuple of position ids per position feature (task.position_features())
    num_ids: int = 0  # > 0: x[:, 0] is a puzzle identifier (ARC), embedded into the prefix tokens
    relations: tuple | None = None  # (L, L) relation ids (tasks/base.relation_ids) when the bias is on
    num_relations: int = 0  # how many relation ids (tasks/base.relation_count)
    input_relations: Callable | None = None  # x, xp -> (B, L_seq, L_seq) ids: Task.input_relations, if any
    prefix_id: int = 0  # the relation id of pairs with a prefix token

    def setup(self):
        net, D = self.cfg, self.cfg.dim
        length = net.prefix_tokens + len(self.positions[0])
        self.tok_x = nn.Embed(self.x_vocab, D)
        if self.num_ids:  # the puzzle embedding: one D-vector per identifier (zero at the start, as in torch)
            self.tok_id = nn.Embed(self.num_ids, D, embedding_init=nn.initializers.zeros)
        self.pos = [nn.Embed(int(max(f)) + 1, D) for f in self.positions]
        self.f_L = Reasoner(net, length, self.relations, self.num_relations)
        self.f_H = self.f_L if net.share_core else Reasoner(net, length, self.relations, self.num_relations)
        hidden = net.guidance_hidden or D
        self.prior_head = Guidance(D, hidden, self.priors, self.priors.scale_mode, self.zero_mean)
        K = (self.priors.components,) if self.priors.components > 1 else ()
        shape = (*K, net.noise_tokens or length, D, self.priors.rank)  # W of the low-rank prior, W_k of a mixture
        normal = lambda shape: lambda key: FACTOR_INIT * jax.random.normal(key, shape)  # noqa: E731
        self.prior_factor = self.param("prior_factor", normal(shape)) if self.priors.rank else None
        # the mixture's offsets and logits (torch_nets.GramNet.prior_offset, prior_logit)
        self.prior_offset = self.param("prior_offset", normal(shape[:-1])) if K else None
        self.prior_logit = self.param("prior_logit", nn.initializers.zeros, K) if K else None
        self.tok_y = nn.Embed(self.y_vocab, net.posterior_bottleneck or D)
        self.y_proj = nn.Dense(D, use_bias=False)
        self.posterior_head = Guidance(D, hidden, self.priors, "network", self.zero_mean)
        self.decoder = nn.Dense(self.y_vocab)
        self.halt_head = nn.Dense(1)
        self.value_head = nn.Dense(1)
        scale = self.priors.init_scale  # z_0 = (h_0, l_0) ~ N(0, init_scale² I), drawn once, never trained
        self.z0 = self.param("z0", lambda key: scale * jax.random.normal(key, (2, length, D)))

    def __call__(self, x, y):
        """Touch every parameter once (for init): e_x, one transition, every head."""
        e_x = self.embed(x)
        h, l = self.initial_state(x.shape[0])
        u, l = self.transition(h, l, e_x)
        self.prior(u)
        self.posterior(u, y)
        return self.decode(u), self.halt(u), self.value(u)

    def initial_state(self, batch: int):
        h0, l0 = jax.lax.stop_gradient(self.z0)  # (L, D) each
        return jnp.broadcast_to(h0, (batch, *h0.shape)), jnp.broadcast_to(l0, (batch, *l0.shape))

    def embed(self, x):
        """Embedded: the input's embedding (B, L, D), with its relation ids (B, L, L) where they depend on it."""
        B, D, P = x.shape[0], self.cfg.dim, self.cfg.prefix_tokens
        ident, x = (x[:, 0], x[:, 1:]) if self.num_ids else (None, x)  # (B,), (B, L_x - 1)
        pad = len(self.positions[0]) - x.shape[1]
        if pad:
            x = jnp.concatenate([x, jnp.zeros((B, pad), x.dtype)], axis=1)  # (B, L_seq)
        rel = None
        if self.input_relations is not None:
            rel = self.input_relations(x, jnp)  # (B, L_seq, L_seq)
            rel = jnp.pad(rel, ((0, 0), (P, 0), (P, 0)), constant_values=self.prefix_id)  # (B, L, L)
        e = self.tok_x(x) * math.sqrt(D)  # (B, L_seq, D)
        for emb, ids in zip(self.pos, self.positions, strict=True):
            e = e + emb(jnp.asarray(ids))
        if ident is None:
            return Embedded(jnp.pad(e, ((0, 0), (P, 0), (0, 0))), rel)  # (B, L, D)
        puzzle = self.tok_id(ident)[:, None] * math.sqrt(D)  # (B, 1, D): prefix token 0
        return Embedded(jnp.concatenate([puzzle, jnp.pad(e, ((0, 0), (P - 1, 0), (0, 0)))], axis=1), rel)

    def transition(self, h, l, e_x):
        for _ in range(self.K):
            l = self.f_L(l, h + e_x.e, e_x.rel)  # (B, L, D)
        return self.f_H(h, l, e_x.rel), l  # u_t, l_t

    def prior(self, u):
        loc, scale = self.prior_head(u)  # (B, L, D) each
        # shared by every input: W (priors.rank), or W_k, o_k and logits (priors.components)
        shared = [p for p in (self.prior_factor, self.prior_offset, self.prior_logit) if p is not None]
        return loc, scale, *(jnp.broadcast_to(p, (loc.shape[0], *p.shape)) for p in shared)  # + each (B, ...)

    def posterior(self, u, y):
        e_y = self.y_proj(self.tok_y(y))  # (B, L_y, D)
        e_y = jnp.pad(e_y, ((0, 0), (u.shape[1] - e_y.shape[1], 0), (0, 0)))  # (B, L, D)
        inp = jnp.concatenate([u, e_y], -1) if self.cfg.posterior_input == "concat" else u + e_y
        return self.posterior_head(inp)

    def decode(self, h):
        return self.decoder(h[:, -self.y_len :])  # (B, L_y, V_y)

    def halt(self, h):
        return self.halt_head(jax.lax.stop_gradient(h[:, 0]))[:, 0]  # (B,)

    def value(self, h):
        return self.value_head(jax.lax.stop_gradient(h[:, 0]))[:, 0]  # (B,)


def build_net(cfg: GramConfig, task) -> GramNet:
    """The networks a GramConfig describes for `task`: architecture from cfg.net, densities'
    settings from cfg.priors, K and the noise-only ablation from cfg.fit (z_0 is a parameter,
    drawn by `init_params`)."""
    cfg = dataclasses.replace(cfg, net=net_in_force(cfg))  # the mixer and the relation bias the task's rules give
    feats = task.position_features() if cfg.net.positions == "2d" else [np.arange(task.seq_len)]
    positions = tuple(tuple(int(v) for v in f) for f in feats)
    zero_mean = cfg.fit.variant == "noise_only"
    task.check_net(cfg.net)
    rel, num_ids, input_relations = None, 0, None
    if uses_relation_bias(cfg.net, task):
        rel = tuple(tuple(int(v) for v in row) for row in relation_ids(task, cfg.net.prefix_tokens))  # (L, L)
        num_ids = relation_count(task, cfg.net.prefix_tokens)
        input_relations = task.input_relations if task.input_dependent_relations else None
    return GramNet(cfg.net, cfg.priors, cfg.fit.K, zero_mean, task.x_vocab, task.y_vocab, task.x_len, task.y_len,
                   positions, task.num_ids if task.id_tokens else 0, rel, num_ids, input_relations,
                   task.num_relations())  # fmt: skip


def init_params(net: GramNet, seed: int) -> dict:
    """Fresh parameters (z_0 included), with the guidance heads' output layers at zero as in torch."""
    x = jnp.ones((1, net.x_len), jnp.int32)
    y = jnp.ones((1, net.y_len), jnp.int32)
    params = jax.tree_util.tree_map(jnp.asarray, dict(net.init(jax.random.key(seed), x, y)["params"]))
    for head in ("prior_head", "posterior_head"):
        w_out = params[head]["net"]["w_out"]
        params[head] = {
            **params[head],
            "net": {**params[head]["net"], "w_out": {"kernel": jnp.zeros_like(w_out["kernel"])}},
        }
    return params
