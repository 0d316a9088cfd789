"""The discrete-diffusion baseline of issue 26 (the paper's D3PM comparison, at CPU scale): a
masked (absorbing-state) diffusion model of complete Sudoku grids, whose denoiser is the same
recursive core as GRAM's, of the same size (gram_ppl.networks.torch_nets.GramNet from the default
NetConfig, run deterministically for N_sup steps), trained on the same grids for the same CPU time
and scored by the same report as `gram generate` (inference.evaluate.generation_report).

    .venv/bin/python benchmarks/gen_diffusion.py --size 4 [--cpu-minutes 30 | --steps N] [--seed 0]
        [--samples 5000] [--denoise-steps 16] [--json runs/d3pm.json] [--save-samples d3pm.npy]

Forward process: each cell of a grid y is replaced by the blank token (the absorbing "mask",
token 1, which is what an unsolved cell is in every Sudoku data set here) with probability t,
t ~ U(0, 1) per grid. The denoiser reads the masked grid as its input x and predicts every cell;
its loss is the cross-entropy on the masked cells, weighted by 1/t (the masked-diffusion ELBO,
Austin et al. 2021 / Sahoo et al. 2024). Sampling: from the all-blank grid, `--denoise-steps`
reverse steps, each drawing the cells of a random share of the still-masked positions from the
denoiser's categorical (so all are drawn by the last step); an unmasked cell is never changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import baseline_args, budget_left, one_core, save_samples, write_json  # noqa: E402

from gram_ppl.config import FitConfig, GramConfig, TaskConfig  # noqa: E402
from gram_ppl.data import build_dataset  # noqa: E402
from gram_ppl.inference.evaluate import describe_generation, generation_report  # noqa: E402
from gram_ppl.models.priors import PRIORS  # noqa: E402
from gram_ppl.networks.torch_nets import build_net  # noqa: E402

BLANK = 1  # the absorbing state: an empty cell
DIGIT0 = 2  # token of digit 1


def denoise(net, x: torch.Tensor, n_sup: int) -> torch.Tensor:
    """Logits (B, L_y, V) for every cell of the masked grids x (B, L_x): the core run n_sup times."""
    e = net.embed(x)  # Embedded: e (B, L, D), relation ids
    h, l = net.initial_state(x.shape[0])  # (B, L, D) each
    for _ in range(n_sup):
        h, l = net.transition(h, l, e)
    return net.decode(h)  # (B, L_y, V_y)


def train(net, grids: torch.Tensor, n_sup: int, steps, cpu_minutes, seed: int, batch: int = 64):
    """AdamW on the masked-diffusion loss until `steps` batches or `cpu_minutes` of CPU time."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(seed)
    start, done, losses = time.process_time(), 0, []
    while budget_left(steps, cpu_minutes, done, start):
        y = grids[torch.randint(len(grids), (batch,), generator=g)]  # (B, L)
        t = torch.rand(batch, 1, generator=g).clamp(min=1.0 / y.shape[1])  # (B, 1) masking rate
        masked = torch.rand(y.shape, generator=g) < t  # (B, L)
        x = torch.where(masked, torch.full_like(y, BLANK), y)
        ce = F.cross_entropy(denoise(net, x, n_sup).transpose(1, 2), y, reduction="none")  # (B, L)
        loss = ((ce * masked).sum(1) / t[:, 0]).mean() / y.shape[1]  # nats per cell, the 1/t-weighted bound
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        done += 1
    return done, time.process_time() - start, float(np.mean(losses[-50:]))


@torch.no_grad()
def sample(net, num: int, length: int, n_sup: int, steps: int, seed: int, chunk: int = 500) -> np.ndarray:
    """`num` grids (num, L) from the all-blank grid by `steps` reverse steps."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, num, chunk):
        B = min(chunk, num - start)
        x = torch.full((B, length), BLANK, dtype=torch.long)
        for k in range(steps, 0, -1):  # reverse time: a share 1/k of the masked cells is drawn at step k
            masked = x == BLANK  # (B, L)
            logits = denoise(net, x, n_sup)  # (B, L, V)
            logits[..., :DIGIT0] = float("-inf")  # only digits are drawn (not pad, not the mask)
            drawn = torch.distributions.Categorical(logits=logits).sample()  # (B, L)
            reveal = masked & (torch.rand(x.shape, generator=g) < 1.0 / k)  # at k = 1 every masked cell
            x = torch.where(reveal, drawn, x)
        out.append(x.numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, choices=(4, 6, 9), default=4)
    baseline_args(p, cpu_minutes=30.0, samples=5000)
    p.add_argument("--denoise-steps", type=int, default=16)
    args = p.parse_args(argv)
    one_core()
    cfg = GramConfig(task=TaskConfig(name="sudoku", size=args.size, mode="generate"),
                     fit=FitConfig(variant="deterministic", seed=args.seed), priors=PRIORS)  # fmt: skip
    cfg = dataclasses.replace(cfg, task=cfg.task.resolved())
    data = build_dataset(cfg.task)
    torch.manual_seed(args.seed)
    net = build_net(cfg, data.task)  # GRAM's core at the default size: the same network, other training
    grids = torch.as_tensor(data.train.y.astype(np.int64))  # (T, L) tokens 2..size+1
    cpu = None if args.steps else args.cpu_minutes
    batches, seconds, loss = train(net, grids, cfg.fit.n_sup, args.steps, cpu, args.seed)
    net.eval()
    boards = sample(net, args.samples, data.task.y_len, cfg.fit.n_sup, args.denoise_steps, args.seed + 1)
    bad = data.task.conflicts(np.full(data.task.x_len, BLANK, np.uint8), boards)  # (M,)
    report = generation_report(boards, bad == 0, data.train.y, data.test.y, bad, data.task.grid_count)
    params = sum(p.numel() for p in net.parameters())
    row = {"model": "masked-diffusion", "size": args.size, "seed": args.seed, "batches": batches, "params": params,
           "cpu_seconds": round(seconds, 1), "train_loss": round(loss, 4), "denoise_steps": args.denoise_steps,
           **report}  # fmt: skip
    print(f"masked diffusion, {args.size}x{args.size}, seed {args.seed}, {params:,} parameters, {batches} batches in "
          f"{seconds / 60:.1f} CPU minutes (loss {loss:.3f} nats per cell), {args.denoise_steps} reverse steps: "
          f"{describe_generation(report)}")  # fmt: skip
    write_json(args.json, row)
    save_samples(args.save_samples, boards)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
