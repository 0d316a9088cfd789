"""The GRAM networks in torch: encoder, recursive core f_L / f_H, guidance heads, decoder, halt
and value heads. Shapes: B puzzles, L positions (prefix tokens included), D = NetConfig.dim.

Each module's docstring names the density or map it parameterises. The Pyro model file
(models/gram_pyro.py) holds the sample statements; this file holds no randomness except the
initial state z_0, drawn once from N(0, init_scale² I) at construction and saved as a buffer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gram_ppl.config import GramConfig, NetConfig, PriorConfig, net_in_force
from gram_ppl.networks import FACTOR_INIT, Embedded, check_mixer
from gram_ppl.tasks.base import relation_count, relation_ids, uses_relation_bias


class SwiGLU(nn.Module):
    """Position-wise SwiGLU MLP: d_in -> hidden -> d_out."""

    def __init__(self, d_in: int, hidden: int, d_out: int | None = None):
        super().__init__()
        self.w_in = nn.Linear(d_in, 2 * hidden, bias=False)
        self.w_out = nn.Linear(hidden, d_out or d_in, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.w_in(x).chunk(2, dim=-1)  # (..., hidden) each
        return self.w_out(F.silu(gate) * a)  # (..., d_out)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention over the L positions. With `relations` (L, L) ids
    (tasks/base.relation_ids) of `num_ids` kinds, a learned scalar per head and relation id, zero
    at the start, is added to each pair's attention logit: the relation bias. Ids `rel` (B, L, L)
    given with the input (an input-dependent task's) replace the fixed ones."""

    def __init__(self, dim: int, heads: int, relations: np.ndarray | None = None, num_ids: int = 0):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.rel = None
        if relations is not None:
            self.rel = nn.Parameter(torch.zeros(num_ids, heads))  # (R, H)
            self.register_buffer("rel_ids", torch.as_tensor(relations, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, rel: torch.Tensor | None = None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, L, D/H)
        bias = None
        if self.rel is not None:
            ids = self.rel_ids if rel is None else rel  # (L, L) or (B, L, L)
            bias = self.rel[ids].movedim(-1, -3)  # (H, L, L) or (B, H, L, L)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, L, D/H)
        return self.out(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class TokenMLP(nn.Module):
    """MLP-mixer token mixing: a SwiGLU across the L positions (TRM's choice for Sudoku)."""

    def __init__(self, length: int, expansion: float):
        super().__init__()
        self.mlp = SwiGLU(length, max(1, int(expansion * length)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)  # (B, L, D)


class Block(nn.Module):
    """Post-norm residual block: token mixer then SwiGLU, each followed by RMSNorm."""

    def __init__(self, cfg: NetConfig, length: int, relations: np.ndarray | None = None, num_ids: int = 0):
        super().__init__()
        check_mixer(cfg)
        self.attention = cfg.mixer == "attention"
        if self.attention:
            self.mix = Attention(cfg.dim, cfg.heads, relations, num_ids)
        else:
            self.mix = TokenMLP(length, cfg.expansion)
        self.mlp = SwiGLU(cfg.dim, int(cfg.expansion * cfg.dim))

    def forward(self, x: torch.Tensor, rel: torch.Tensor | None = None) -> torch.Tensor:
        mixed = self.mix(x, rel) if self.attention else self.mix(x)  # (B, L, D)
        x = F.rms_norm(x + mixed, x.shape[-1:])  # (B, L, D)
        return F.rms_norm(x + self.mlp(x), x.shape[-1:])  # (B, L, D)


class Reasoner(nn.Module):
    """One recursive update, f(state, injection) = blocks(state + injection): f_L or f_H."""

    def __init__(self, cfg: NetConfig, length: int, relations: np.ndarray | None = None, num_ids: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg, length, relations, num_ids) for _ in range(cfg.layers))

    def forward(self, state: torch.Tensor, injection: torch.Tensor, rel: torch.Tensor | None = None) -> torch.Tensor:
        x = state + injection  # (B, L, D)
        for block in self.blocks:
            x = block(x, rel)
        return x


class Guidance(nn.Module):
    """Location and scale of a transition-noise density over ε_t, per token and channel.

    As the prior: p_θ(ε_t | u_t) with input u_t. As the posterior: q_φ(ε_t | u_t, y) with input
    [u_t, embed(y)] (or u_t + embed(y)). The location head is zero-initialised; the scale is
    bounded in [min_scale, max_scale] through a sigmoid on the log scale and starts at `scale`.
    With scale_mode "learned" one scalar scale is learned; with "fixed" it is the constant
    `scale`; with zero_mean the location is 0 (the noise-only ablation).
    """

    def __init__(self, d_in: int, dim: int, hidden: int, priors: PriorConfig, scale_mode: str, zero_mean: bool):
        super().__init__()
        self.scale_mode, self.zero_mean = scale_mode, zero_mean
        self.log_lo, self.log_hi = math.log(priors.min_scale), math.log(priors.max_scale)
        frac = (math.log(priors.scale) - self.log_lo) / max(self.log_hi - self.log_lo, 1e-12)
        self.bias0 = math.log(max(frac, 1e-6) / max(1 - frac, 1e-6))  # sigmoid(bias0) = frac
        self.net = SwiGLU(d_in, hidden, 2 * dim)
        nn.init.zeros_(self.net.w_out.weight)
        self.raw_scale = nn.Parameter(torch.zeros(())) if scale_mode == "learned" else None
        self.register_buffer("fixed_scale", torch.tensor(priors.scale), persistent=False)

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.net(inp).chunk(2, dim=-1)  # (B, L, D) each
        if self.zero_mean:
            loc = torch.zeros_like(loc)
        if self.scale_mode == "fixed":
            return loc, self.fixed_scale.expand_as(loc)
        if self.scale_mode == "learned":
            raw = self.raw_scale.expand_as(loc)
        log_scale = self.log_lo + (self.log_hi - self.log_lo) * torch.sigmoid(raw + self.bias0)  # (B, L, D)
        return loc, log_scale.exp()


class GramNet(nn.Module):
    """All GRAM networks for one task: what models/gram_pyro.py calls.

    - embed(x): e_x = f_enc(x), token + position embeddings, prefix tokens prepended  (B, L, D)
      (an Embedded, with the relation ids (B, L, L) of a task whose relations depend on x)
      (zero; the first holds the puzzle embedding of x[:, 0] when the task has identifiers: ARC)
    - transition(h, l, e_x): K updates l <- f_L(l, h + e_x), then u = f_H(h, l)       (B, L, D) x 2
    - prior(u): loc and scale (and with PriorConfig.rank the learned directions W (B, L_ε, D, r);
      with PriorConfig.components = K > 1 W_k (B, K, L_ε, D, r), offsets o_k (B, K, L_ε, D), logits (B, K))
      of p_θ(ε_t | u_t) on the noised positions L_ε (all L, or the
      first NetConfig.noise_tokens register tokens)                                   (B, L_ε, D) x 2
    - posterior(u, y): loc and scale of q_φ(ε_t | u_t, y)                              (B, L_ε, D) x 2
    - add_noise(u, ε): h = u + ε on the noised positions                               (B, L, D)
    - decode(h): logits of p_θ(y | h_T) on the output positions                       (B, L_y, V_y)
    - halt(h), value(h): ACT halt logit and LPRM value from token 0 of a detached h   (B,)
    """

    def __init__(self, net: NetConfig, priors: PriorConfig, task, *, K: int, zero_mean: bool = False, seed: int = 0):
        super().__init__()
        D = net.dim
        task.check_net(net)
        self.K, self.prefix, self.x_len, self.y_len = K, net.prefix_tokens, task.x_len, task.y_len
        self.bfloat16 = net.precision == "bfloat16"  # the core's matrix products under autocast
        self.id_tokens = task.id_tokens  # 1: x[:, 0] is a puzzle identifier (ARC)
        self.pad_x = task.seq_len - (task.x_len - task.id_tokens)  # output slots appended to the input (colouring)
        length = net.prefix_tokens + task.seq_len
        self.tok_x = nn.Embedding(task.x_vocab, D)
        if task.id_tokens:  # TRM's puzzle embedding: one D-vector per identifier (zero at the start)
            self.tok_id = nn.Embedding(task.num_ids, D)
            nn.init.zeros_(self.tok_id.weight)
        feats = task.position_features() if net.positions == "2d" else [np.arange(task.seq_len)]
        self.pos = nn.ModuleList(nn.Embedding(int(f.max()) + 1, D) for f in feats)
        for i, f in enumerate(feats):
            self.register_buffer(f"pos_ids_{i}", torch.as_tensor(np.asarray(f), dtype=torch.long), persistent=False)
        biased = uses_relation_bias(net, task)
        rel = relation_ids(task, net.prefix_tokens) if biased else None  # (L, L)
        num_ids = relation_count(task, net.prefix_tokens) if biased else 0
        self.input_relations = task.input_relations if biased and task.input_dependent_relations else None
        self.prefix_id = task.num_relations()  # the id of pairs with a prefix token
        self.f_L = Reasoner(net, length, rel, num_ids)
        self.f_H = self.f_L if net.share_core else Reasoner(net, length, rel, num_ids)
        hidden = net.guidance_hidden or D
        self.prior_head = Guidance(D, D, hidden, priors, priors.scale_mode, zero_mean)
        noised = net.noise_tokens or length  # L_ε
        # W of the low-rank prior (PriorConfig.rank): r learned directions over the noised positions
        # and channels, shared by every input (μ and σ depend on u_t); small at the start, not 0 (a saddle)
        K = (priors.components,) if priors.components > 1 else ()
        self.prior_factor = nn.Parameter(FACTOR_INIT * torch.randn(*K, noised, D, priors.rank)) if priors.rank else None
        # a mixture of K such Gaussians (PriorConfig.components): offsets o_k (small, not 0: the
        # components must differ) and logits (π = softmax, uniform at the start)
        self.prior_offset = nn.Parameter(FACTOR_INIT * torch.randn(*K, noised, D)) if K else None  # (K, L_ε, D)
        self.prior_logit = nn.Parameter(torch.zeros(*K)) if K else None  # (K,)
        y_width = net.posterior_bottleneck or D
        self.tok_y = nn.Embedding(task.y_vocab, y_width)
        self.pooled, self.noise_tokens = net.posterior_input == "pooled", net.noise_tokens
        self.y_proj = nn.Linear((task.y_len if self.pooled else 1) * y_width, D, bias=False)
        self.concat = net.posterior_input != "add"
        self.posterior_head = Guidance(2 * D if self.concat else D, D, hidden, priors, "network", zero_mean)
        self.decoder = nn.Linear(D, task.y_vocab)
        self.halt_head = nn.Linear(D, 1)
        self.value_head = nn.Linear(D, 1)
        g = torch.Generator().manual_seed(seed)
        z0 = priors.init_scale * torch.randn(2, length, D, generator=g)  # z_0 = (h_0, l_0), drawn once
        self.register_buffer("z0", z0)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        h0, l0 = self.z0  # (L, D) each
        return h0.expand(batch, -1, -1), l0.expand(batch, -1, -1)  # (B, L, D) each

    def embed(self, x: torch.Tensor) -> Embedded:
        """The input's embedding (B, L, D), with its relation ids (B, L, L) where they depend on it."""
        B, D = x.shape[0], self.tok_x.embedding_dim
        ident, x = (x[:, 0], x[:, 1:]) if self.id_tokens else (None, x)  # (B,), (B, L_x - 1)
        if self.pad_x:
            x = torch.cat([x, x.new_zeros(B, self.pad_x)], dim=1)  # (B, L_seq): output slots are pad
        rel = None
        if self.input_relations is not None:
            rel = self.input_relations(x, torch)  # (B, L_seq, L_seq)
            rel = F.pad(rel, (self.prefix, 0, self.prefix, 0), value=self.prefix_id)  # (B, L, L)
        e = self.tok_x(x) * math.sqrt(D)  # (B, L_seq, D)
        for i, emb in enumerate(self.pos):
            e = e + emb(getattr(self, f"pos_ids_{i}"))  # (B, L_seq, D)
        if ident is None:
            return Embedded(F.pad(e, (0, 0, self.prefix, 0)), rel)  # (B, L, D): zero prefix tokens first
        puzzle = self.tok_id(ident)[:, None] * math.sqrt(D)  # (B, 1, D): the puzzle embedding, prefix token 0
        e = torch.cat([puzzle, F.pad(e, (0, 0, self.prefix - 1, 0))], dim=1)  # (B, L, D): other prefix tokens 0
        return Embedded(e, rel)

    def transition(self, h: torch.Tensor, l: torch.Tensor, e_x: Embedded) -> tuple[torch.Tensor, torch.Tensor]:
        # NetConfig.precision: products in bfloat16; the residual stream and norms stay float32
        with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            for _ in range(self.K):
                l = self.f_L(l, h + e_x.e, e_x.rel)  # (B, L, D)
            u = self.f_H(h, l, e_x.rel)  # (B, L, D)
        return u.float(), l.float()  # u_t, l_t: (B, L, D) each, float32

    def noised(self, u: torch.Tensor) -> torch.Tensor:
        return u[:, : self.noise_tokens] if self.noise_tokens else u  # (B, L_ε, D): the positions that get noise

    def add_noise(self, u: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if not self.noise_tokens:
            return u + eps  # (B, L, D)
        return torch.cat([u[:, : self.noise_tokens] + eps, u[:, self.noise_tokens :]], dim=1)  # (B, L, D)

    def prior(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loc, scale = self.prior_head(self.noised(u))  # (B, L_ε, D) each
        # shared by every input: W (priors.rank), or W_k, o_k and logits (priors.components)
        shared = [p for p in (self.prior_factor, self.prior_offset, self.prior_logit) if p is not None]
        return loc, scale, *(p.expand(loc.shape[0], *p.shape) for p in shared)  # + each (B, ...), a view

    def posterior(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.noised(u)  # (B, L_ε, D)
        if self.pooled:
            e_y = self.y_proj(self.tok_y(y).flatten(1))[:, None].expand_as(u)  # (B, L_ε, D): all of y, once
        else:
            e_y = self.y_proj(self.tok_y(y))  # (B, L_y, D)
            e_y = F.pad(e_y, (0, 0, u.shape[1] - e_y.shape[1], 0))  # (B, L, D): y sits on the output positions
        inp = torch.cat([u, e_y], dim=-1) if self.concat else u + e_y  # (B, L_ε, 2D) or (B, L, D)
        return self.posterior_head(inp)  # loc, scale: (B, L_ε, D) each

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h[:, -self.y_len :])  # (B, L_y, V_y)

    def halt(self, h: torch.Tensor) -> torch.Tensor:
        return self.halt_head(h[:, 0].detach()).squeeze(-1)  # (B,)

    def value(self, h: torch.Tensor) -> torch.Tensor:
        return self.value_head(h[:, 0].detach()).squeeze(-1)  # (B,)


def build_net(cfg: GramConfig, task) -> GramNet:
    """The networks a GramConfig describes for `task`: architecture from cfg.net, densities'
    settings from cfg.priors, K, the noise-only ablation and z_0's seed from cfg.fit."""
    zero_mean = cfg.fit.variant == "noise_only"
    net = net_in_force(cfg)  # the mixer and the relation bias the task's rules give
    return GramNet(net, cfg.priors, task, K=cfg.fit.K, zero_mean=zero_mean, seed=cfg.fit.seed)
