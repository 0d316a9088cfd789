"""Fitting GRAM into a run folder: the training loop, resume, progress, periodic prior-sample
validity; loading a run for sampling, conversion between backends, evaluation.

The run-folder format and its guarantees (one atomic commit of checkpoint, history and config;
an exclusive writer lock; config edits detected on resume) are in gram_ppl.inference.runfolder
and docs/formats.md. Resuming continues from the checkpoint and, on a CPU, ends bit-identical to
a run that was never interrupted: the evaluation draws its samples under a forked RNG and never
touches the training RNG. Ctrl-C (SIGINT) saves a checkpoint before it stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from gram_ppl.config import GramConfig
from gram_ppl.data import Dataset, build_dataset
from gram_ppl.inference.resources import check_fit
from gram_ppl.inference.runfolder import (
    RunError,
    check_resume,
    create_run,
    is_empty,
    load_config,
    read_checkpoint,
    trained_config,
    write_checkpoint,
    write_run_files,
    writer_lock,
)
from gram_ppl.inference.svi_pyro import NonFiniteLoss, Trainer
from gram_ppl.networks.torch_nets import GramNet
from gram_ppl.tasks import get_task

__all__ = ["FitResult", "LoadedRun", "RunError", "evaluate_run", "fit", "load_config", "load_run"]


class FitResult(NamedTuple):
    net: torch.nn.Module  # the network to sample from (the EMA copy when enabled)
    trainer: Trainer
    history: list[dict]
    config: GramConfig
    folder: Path | None


def default_model(cfg: GramConfig):
    from gram_ppl.models import get_model

    return get_model(cfg.backend)


def make_trainer(mod, cfg: GramConfig, task):
    """The backend's trainer with fresh networks: svi_pyro.Trainer (torch) or svi_numpyro.Trainer
    (flax parameters, jit-compiled steps)."""
    if cfg.backend == "numpyro":
        from gram_ppl.inference.svi_numpyro import Trainer as NumPyroTrainer
        from gram_ppl.networks.flax_nets import make_net

        return NumPyroTrainer(mod, make_net(cfg, cfg.priors, task), cfg, cfg.priors)
    return Trainer(mod, GramNet(cfg, cfg.priors, task).to(torch_device()), cfg, cfg.priors)


def torch_device() -> torch.device:
    """The first CUDA device when torch sees one, else the CPU (no flag needed)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup_torch(threads: int) -> None:
    """Explicit thread count (shared cores fight) and flushed denormals (deep RMSNorm recursion)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def fit(
    cfg: GramConfig,
    out: str | Path | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    cpu_minutes: float | None = None,
    resume: bool = False,
    force: bool = False,
    mod=None,
    data: Dataset | None = None,
    progress: bool = True,
    eval_every_s: float = 120.0,
    checkpoint_every_s: float = 120.0,
    eval_puzzles: int = 128,
    log=None,
) -> FitResult:
    """Train until `steps` batches (each N_sup optimiser steps), `minutes` of training or
    `cpu_minutes` of this process's CPU time (a budget machine load does not change).
    `log(str)` receives a line per evaluation (e.g. print); the progress bar is `progress`."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise RunError(f"steps must be an integer >= 0, got {steps!r}")
    for name, v in (("minutes", minutes), ("cpu_minutes", cpu_minutes)):
        if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise RunError(f"{name} must be a positive finite number, got {v!r}")
    mod = mod or default_model(cfg)
    folder = Path(out) if out is not None else None
    if folder is not None:
        if not resume and not is_empty(folder) and not force:
            raise RunError(f"{folder} exists and is not empty (--resume to continue it, --force to overwrite)")
        if resume and not folder.is_dir():
            raise RunError(f"{folder}: no such run folder; nothing to resume")
        folder.mkdir(parents=True, exist_ok=True)
    with writer_lock(folder) if folder is not None else contextlib.nullcontext():
        return _fit(cfg, folder, mod, data, resume, force, steps, minutes, cpu_minutes, progress, eval_every_s,
                    checkpoint_every_s, eval_puzzles, log)  # fmt: skip


def _fit(cfg, folder, mod, data, resume, force, steps, minutes, cpu_minutes, progress, eval_every_s,
         checkpoint_every_s, eval_puzzles, log) -> FitResult:  # fmt: skip
    if resume:  # the checkpoint is read once: its config is checked, then its state restored
        state, history = read_checkpoint(folder, map_location=torch_device())
        cfg = check_resume(folder, cfg, mod, force, trained_config(state))
    cfg = dataclasses.replace(cfg, priors=cfg.priors or mod.PRIORS)
    check_fit(cfg, get_task(cfg.task.name, cfg.task.size))  # before any memory is taken
    setup_torch(cfg.fit.threads)
    data = data or build_dataset(cfg.task)
    torch.manual_seed(cfg.fit.seed)
    trainer = make_trainer(mod, cfg, data.task)
    loop = TrainLoop(trainer, data, cfg, log)  # everything is validated before the folder is touched
    if resume:
        loop.restore(state, history, folder)
        if force:  # the run continues under the new config and model file: record and apply them
            trainer.apply_hyperparameters()
            write_run_files(folder, cfg, mod)
    elif folder is not None:
        create_run(folder, cfg, mod, force)
    steps = steps if steps is not None else (None if minutes is not None or cpu_minutes is not None else 100)
    loop.run(folder, steps, minutes, progress, eval_every_s, checkpoint_every_s, eval_puzzles, cpu_minutes)
    return FitResult(trainer.sampling_net(), trainer, loop.history, cfg, folder)


class TrainLoop:
    """Data order, history and checkpoints around a Trainer."""

    def __init__(self, trainer: Trainer, data: Dataset, cfg: GramConfig, log=None):
        self.trainer, self.data, self.cfg, self.log = trainer, data, cfg, log
        self.x, self.y = data.train.x, data.train.y  # (N, L_x), (N, L_y) uint8
        self.n = data.train.num_solutions  # (N,) exact number of solutions of each training input
        self.rng = np.random.default_rng(cfg.fit.seed)
        self.perm, self.cursor, self.step, self.elapsed, self.history = None, 0, 0, 0.0, []
        self.cpu = 0.0  # CPU seconds of this process spent in training (a load-independent budget)
        if len(self.x) < cfg.fit.batch_size:
            raise RunError(f"batch_size {cfg.fit.batch_size} exceeds the {len(self.x)} training examples")

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """x (B, L_x), y (B, L_y) as tensors and the inputs' numbers of solutions (B,)."""
        B = self.cfg.fit.batch_size
        if self.perm is None or self.cursor + B > len(self.perm):  # new epoch; the ragged tail is dropped
            self.perm, self.cursor = self.rng.permutation(len(self.x)), 0
        idx = self.perm[self.cursor : self.cursor + B]
        self.cursor += B
        x, y, n = self.x[idx], self.y[idx], self.n[idx]  # symmetries keep the number of solutions
        if self.cfg.fit.augment:
            x, y = self.data.task.augment(self.rng)(x, y)
        device = getattr(self.trainer.net, "z0", torch.zeros(())).device  # the torch networks' device
        x, y = (torch.as_tensor(a.astype(np.int64), device=device) for a in (x, y))
        return x, y, n

    def run(
        self, folder, steps, minutes, progress, eval_every_s, checkpoint_every_s, eval_puzzles, cpu_minutes=None
    ) -> None:
        """Train until `steps` batches, `minutes` of wall time or `cpu_minutes` of this process's
        CPU time (whichever comes first; budgets count from the start of the run, across resumes)."""
        from tqdm import tqdm  # text bar everywhere (tqdm.auto warns in notebooks without ipywidgets)

        bar = tqdm(total=steps, initial=self.step, disable=not progress, desc="fit", unit="batch")
        last_eval = last_ckpt = time.monotonic()
        start, start_elapsed = time.monotonic(), self.elapsed
        cpu_start, start_cpu = time.process_time(), self.cpu
        try:
            while (
                (steps is None or self.step < steps)
                and (minutes is None or self.elapsed < 60 * minutes)
                and (cpu_minutes is None or self.cpu < 60 * cpu_minutes)
            ):
                x, y, n = self.next_batch()
                info = self.trainer.train_batch(x, y, n)
                self.elapsed = start_elapsed + time.monotonic() - start
                self.cpu = start_cpu + time.process_time() - cpu_start
                record = {"step": self.step + 1, "seconds": round(self.elapsed, 3), "cpu_seconds": round(self.cpu, 3)}
                self.history.append({**record, **info._asdict()})
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{info.loss:.3f}", ce=f"{info.ce:.3f}", kl=f"{sum(info.kl):.3f}")
                now = time.monotonic()
                if now - last_eval >= eval_every_s:
                    self.evaluate(eval_puzzles)
                    last_eval = now
                if folder is not None and now - last_ckpt >= checkpoint_every_s:
                    self.save(folder)
                    last_ckpt = now
        except KeyboardInterrupt:  # Ctrl-C, wherever it lands: keep what was trained
            bar.close()
            self.history = [r for r in self.history if r["step"] <= self.step]  # a record counts with its batch
            if folder is not None and self.step > 0:
                self.save(folder)
                raise Interrupted(f"interrupted after batch {self.step}; checkpoint saved in {folder}") from None
            raise
        except NonFiniteLoss:
            bar.close()
            raise
        bar.close()
        self.evaluate(eval_puzzles)
        if folder is not None:
            self.save(folder)

    def evaluate(self, eval_puzzles: int) -> dict:
        """Validity of one prior sample and one guide sample per held-out puzzle; the training RNG
        is untouched (forked)."""
        report = self.trainer.validity(self.data.task, self.data.test, eval_puzzles, self.cfg.fit.seed + 1)
        record = {"step": self.step, "seconds": round(self.elapsed, 3), "cpu_seconds": round(self.cpu, 3)}
        record["eval"] = report
        self.history.append(record)
        if self.log is not None:
            self.log(f"step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
        return report

    # ---- checkpoints -------------------------------------------------------------------
    def state(self) -> dict:
        return {
            **self.trainer.checkpoint(),
            "data_rng": json.dumps(self.rng.bit_generator.state),
            "perm": torch.as_tensor(self.perm) if self.perm is not None else None,
            "cursor": self.cursor,
            "step": self.step,
            "elapsed": self.elapsed,
            "cpu_seconds": self.cpu,
        }

    def save(self, folder: Path) -> None:
        write_checkpoint(folder, self.state(), self.history, self.cfg)

    def restore(self, s: dict, history: list[dict], folder: Path) -> None:
        """The trainer, data order, counters and history from a checkpoint (`read_checkpoint`)."""
        with _loading(folder):
            self.trainer.restore(s)
            self.rng.bit_generator.state = json.loads(s["data_rng"])
            self.perm = s["perm"].numpy() if s["perm"] is not None else None
            self.cursor, self.step, self.elapsed = s["cursor"], s["step"], s["elapsed"]
        self.history = history
        self.cpu = float(s.get("cpu_seconds", 0.0))  # checkpoints before the CPU budget lack it


@contextlib.contextmanager
def _loading(folder):
    """A checkpoint whose contents do not fit the networks or the loop is a RunError naming it."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise RunError(f"{Path(folder) / 'checkpoint.pt'}: cannot be loaded ({type(e).__name__}: {e})") from None


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after a checkpoint was saved (the CLI exits with 130)."""


class LoadedRun:
    """A run loaded for sampling: its config, the networks to sample from (EMA when enabled: a
    torch module, or svi_numpyro.Bound), the model module, the task; the data set is built only
    when `data` is first used (sampling user puzzles never needs it). Unpacks as
    (config, net, data, mod)."""

    def __init__(self, config: GramConfig, net, mod, data: Dataset | None = None):
        self.config, self.net, self.mod, self._data = config, net, mod, data

    @property
    def task(self):
        return get_task(self.config.task.name, self.config.task.size)

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = build_dataset(self.config.task)
        return self._data

    def __iter__(self):
        return iter((self.config, self.net, self.data, self.mod))


def load_run(folder: str | Path, mod=None, as_backend: str | None = None) -> LoadedRun:
    """Config, sampling network and model module of a finished or checkpointed run (the data
    set is not rebuilt: `LoadedRun.data` builds it on first use); with
    `as_backend` the weights are converted to that backend's networks in memory (the forward
    passes agree to float32 rounding, tests/test_flax_nets.py)."""
    cfg = load_config(folder)
    mod = mod if mod is not None and as_backend in (None, cfg.backend) else default_model(cfg)
    setup_torch(cfg.fit.threads)
    state, _ = read_checkpoint(Path(folder), map_location=torch_device())
    trainer = make_trainer(mod, cfg, get_task(cfg.task.name, cfg.task.size))
    with _loading(folder):
        trainer.restore(state)
    run = LoadedRun(cfg, trainer.sampling_net(), mod)
    return run if as_backend in (None, cfg.backend) else convert_loaded(run, as_backend)


def _load_loop(folder: str | Path, mod=None) -> TrainLoop:
    """A run's training loop (trainer, data order, history) restored from its checkpoint."""
    cfg = load_config(folder)
    mod = mod or default_model(cfg)
    setup_torch(cfg.fit.threads)
    data = build_dataset(cfg.task)
    loop = TrainLoop(make_trainer(mod, cfg, data.task), data, cfg)
    loop.restore(*read_checkpoint(Path(folder), map_location=torch_device()), folder)
    return loop


def convert_loaded(run: LoadedRun, backend: str) -> LoadedRun:
    """The same run with its sampling weights moved to `backend`'s networks and model file."""
    from gram_ppl.networks import convert

    cfg = dataclasses.replace(run.config, backend=backend)
    share = cfg.net.share_core
    if backend == "numpyro":
        from gram_ppl.inference.svi_numpyro import Bound
        from gram_ppl.networks.flax_nets import make_net

        state = {k: v.cpu().numpy() for k, v in run.net.state_dict().items()}
        net = Bound(make_net(cfg, cfg.priors, run.task), convert.torch_to_flax(state, share))
    else:
        net = GramNet(cfg, cfg.priors, run.task).to(torch_device())
        net.load_state_dict({k: torch.as_tensor(v) for k, v in convert.flax_to_torch(run.net.params, share).items()})
    return LoadedRun(cfg, net, default_model(cfg), run._data)


def convert_run(folder: str | Path, out: str | Path, backend: str, force: bool = False) -> Path:
    """A new run folder holding `folder`'s run for `backend`: config (backend changed), that
    backend's model file, history, and a checkpoint with the converted sampling weights and a
    fresh optimiser (training can go on with --resume, from the converted weights)."""
    source = _load_loop(folder)
    if source.cfg.backend == backend:
        raise RunError(f"{folder} is already a {backend} run")
    run = LoadedRun(source.cfg, source.trainer.sampling_net(), source.trainer.mod, source.data)
    converted = convert_loaded(run, backend)
    out = Path(out)
    create_run(out, converted.config, converted.mod, force)
    trainer = make_trainer(converted.mod, converted.config, run.data.task)
    if backend == "numpyro":
        trainer.params = converted.net.params
        trainer.opt_state = trainer.tx.init(trainer.params)
        trainer.ema = trainer.params if trainer.ema is not None else None
    else:
        trainer.net.load_state_dict(converted.net.state_dict())
        if trainer.ema is not None:
            trainer.ema.load_state_dict(converted.net.state_dict())
    loop = TrainLoop(trainer, run.data, converted.config)
    loop.rng, loop.perm, loop.cursor = source.rng, source.perm, source.cursor
    loop.step, loop.elapsed, loop.history = source.step, source.elapsed, source.history
    loop.save(out)
    return out


def evaluate_run(
    folder, num_samples: int = 20, depth: int | None = None, puzzles: int | None = None, temperature: float = 1.0
) -> dict:
    """Prior samples for the run's held-out puzzles, scored against exact ground truth
    (inference.evaluate.sample_metrics), plus single-sample validity after each step and the
    metrics split by the inputs' numbers of solutions (1, 2-3, 4+). `temperature` scales the
    prior's σ (inference/tempering.py)."""
    from gram_ppl.inference.evaluate import sample_metrics
    from gram_ppl.inference.sampling import rollout

    cfg, net, data, mod = load_run(folder)
    test, task = data.test, data.task
    x, depth = test.x[:puzzles], depth or cfg.fit.n_sup
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.fit.seed + 2)
        r = rollout(mod, net, cfg, torch.as_tensor(x.astype(np.int64)), num_samples, depth, temperature=temperature)
    n_sol = test.num_solutions[:puzzles]
    metrics = sample_metrics(task, x, test.y[:puzzles], r.boards, n_sol)
    by_depth = [round(float(task.is_valid(x[None], b).mean()), 6) for b in r.per_step]
    by_count = {}
    for name, lo, hi in (("1", 1, 1), ("2-3", 2, 3), ("4+", 4, None)):
        sel = (n_sol >= lo) & ((n_sol <= hi) if hi is not None else True)
        if sel.any() and len(np.unique(n_sol)) > 1:
            m = sample_metrics(task, x[sel], test.y[:puzzles][sel], r.boards[:, sel], n_sol[sel])
            by_count[name] = {"puzzles": int(sel.sum()), "valid": m["valid"], "coverage": m["coverage"]}
    return {
        "puzzles": len(x), "num_samples": num_samples, "depth": depth, "temperature": temperature, **metrics,
        "valid_by_depth": by_depth, "by_num_solutions": by_count,
    }  # fmt: skip
