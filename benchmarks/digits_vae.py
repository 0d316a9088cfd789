"""The digits baseline of issue 26: a VAE written in Pyro (the classic Pyro VAE, Bernoulli pixels),
trained on the same 1,200 binarised digits as `gram fit --task digits --size 8`, for the same
CPU time, and scored by the same judge (gram_ppl.tasks.digits.image_metrics: recognisable share,
Fréchet distance to held-out digits, copies, distinct).

    .venv/bin/python benchmarks/digits_vae.py [--cpu-minutes 10 | --steps N] [--seed 0]
        [--samples 1000] [--z-dim 16] [--hidden 256] [--json runs/vae.json] [--save-samples vae.npy]

The generative story (Kingma and Welling 2014, as in Pyro's VAE tutorial):

    z ~ N(0, I)                          z_dim latent dimensions
    x_p ~ Bernoulli(sigmoid(f_dec(z)_p))  for each of the 64 pixels

and the guide q(z | x) = N(μ_enc(x), σ_enc(x)²). The networks are plain torch modules owned by
this script (no global parameter store); the loss is Pyro's Trace_ELBO, one thread, denormals
flushed. Prints one line of metrics and writes them as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import baseline_args, budget_left, one_core, save_samples, write_json  # noqa: E402

from gram_ppl.config import TaskConfig  # noqa: E402
from gram_ppl.data import build_dataset  # noqa: E402
from gram_ppl.tasks.digits import ON, describe, image_metrics, judge_for  # noqa: E402


class Decoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, 64))

    def forward(self, z):
        return self.net(z)  # (B, 64) Bernoulli logits


class Encoder(nn.Module):
    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))

    def forward(self, x):
        loc, raw = self.net(x).chunk(2, -1)  # (B, z_dim) each
        return loc, nn.functional.softplus(raw) + 1e-4


def model(x, decoder, z_dim):
    with pyro.plate("images", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))  # (B, z_dim)
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)  # (B, 64)


def guide(x, encoder):
    with pyro.plate("images", x.shape[0]):
        pyro.sample("z", dist.Normal(*encoder(x)).to_event(1))


def train(x: torch.Tensor, z_dim: int, hidden: int, steps, cpu_minutes, seed: int, batch: int = 64):
    """Adam on Trace_ELBO until `steps` batches or `cpu_minutes` of this process's CPU time."""
    torch.manual_seed(seed)
    decoder, encoder = Decoder(z_dim, hidden), Encoder(z_dim, hidden)
    opt = torch.optim.Adam([*decoder.parameters(), *encoder.parameters()], lr=1e-3)
    elbo, rng = Trace_ELBO(), np.random.default_rng(seed)
    start, done, losses = time.process_time(), 0, []
    while budget_left(steps, cpu_minutes, done, start):
        idx = torch.as_tensor(rng.choice(len(x), batch, replace=False))
        loss = (
            elbo.differentiable_loss(lambda xb: model(xb, decoder, z_dim), lambda xb: guide(xb, encoder), x[idx])
            / batch
        )  # nats per image
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done += 1
    return decoder, done, time.process_time() - start, float(np.mean(losses[-50:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    baseline_args(p, cpu_minutes=10.0, samples=1000)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args(argv)
    one_core()
    data = build_dataset(TaskConfig(name="digits", size=8))  # the data GRAM's digits runs use (data seed 0)
    x = torch.as_tensor((data.train.y == ON).astype(np.float32))  # (1200, 64) pixels 0/1
    cpu = None if args.steps else args.cpu_minutes
    decoder, batches, seconds, loss = train(x, args.z_dim, args.hidden, args.steps, cpu, args.seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(args.seed + 1)
        z = torch.randn(args.samples, args.z_dim, generator=g)  # (M, z_dim) prior draws
        pixels = torch.bernoulli(torch.sigmoid(decoder(z)), generator=g).numpy()  # (M, 64) sampled, not the mean
    samples = np.where(pixels > 0, ON, ON - 1).astype(np.uint8)
    metrics = image_metrics(samples, data.train.y, judge_for(data.train.y))
    row = {"model": "pyro-vae", "seed": args.seed, "batches": batches, "cpu_seconds": round(seconds, 1),
           "train_loss_nats": round(loss, 2), **metrics}  # fmt: skip
    print(f"Pyro VAE, seed {args.seed}, {batches} batches in {seconds / 60:.1f} CPU minutes (-ELBO {loss:.1f} "
          f"nats per image): {describe(metrics)}")  # fmt: skip
    write_json(args.json, row)
    save_samples(args.save_samples, samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
