"""Fitting GRAM into a run folder: the training loop, resume, progress, periodic prior-sample
validity. Loading a run and converting it between backends are in inference/loading.py,
scoring it in inference/evaluate.py (both re-exported here).

The run-folder format and its guarantees (one atomic commit of checkpoint, history and config;
an exclusive writer lock; config edits detected on resume) are in gram_ppl.inference.runfolder
and docs/formats.md. Resuming continues from the checkpoint and, on a CPU, ends bit-identical to
a run that was never interrupted: the evaluation draws its samples under a forked RNG and never
touches the training RNG. Ctrl-C (SIGINT) saves a checkpoint before it stops.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gram_ppl.config import (
    GramConfig,
    augments,
    describe_priors,
    guide_family,
    keeps_best,
    prior_path,
    resolved,
    with_priors,
)
from gram_ppl.data import Dataset, build_dataset
from gram_ppl.inference import parallel
from gram_ppl.inference.backend import NonFiniteLoss, get_backend
from gram_ppl.inference.evaluate import evaluate_run, held_out_validity, prior_draws
from gram_ppl.inference.loading import LoadedRun, checkpoint_errors, convert_run, default_model, load_run
from gram_ppl.inference.objective import guided_dims, kl_ceiling, kl_floor, log_count_unknown
from gram_ppl.inference.resources import check_fit
from gram_ppl.inference.runfolder import (
    DATA_FILE,
    Checkpoint,
    RunError,
    check_resume,
    create_run,
    data_changes,
    load_config,
    nothing_to_lose,
    read_checkpoint,
    write_checkpoint,
    write_data_record,
    write_run_files,
    writer_lock,
)
from gram_ppl.seeds import seed_for
from gram_ppl.tasks import task_for

__all__ = ["FitResult", "Interrupted", "LoadedRun", "RunError", "convert_run", "evaluate_run", "fit", "load_config",
           "load_run"]  # fmt: skip


class FitResult(NamedTuple):
    net: object  # the networks to sample from (the EMA copy when enabled, the best evaluation's under fit.keep_best):
    # a torch module or svi_numpyro.Bound
    trainer: object  # the backend's Trainer (inference/backend.py)
    history: list[dict]
    config: GramConfig
    folder: Path | None
    best: dict | None = None  # fit.keep_best: {step, metric, value} of the evaluation whose weights `net` holds


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
    eval_every: int | None = 200,
    eval_every_s: float | None = None,
    checkpoint_every_s: float = 120.0,
    eval_puzzles: int = 128,
    log=None,
) -> FitResult:
    """Train until `steps` batches (each N_sup optimiser steps), `minutes` of training or
    `cpu_minutes` of this process's CPU time (a budget machine load does not change).
    `log(str)` receives a line per evaluation (e.g. print); the progress bar is `progress`.
    Held-out evaluations every `eval_every` batches (curves comparable across machines), or, when
    `eval_every_s` is given, every that many seconds instead but at most a tenth of the wall time
    (an evaluation that took d seconds waits 10·d for the next: a 9x9 generation evaluation samples
    128 boards at 64 steps); and once at the end."""
    if eval_every is not None and (isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1):
        raise RunError(f"eval_every must be a number of batches >= 1, got {eval_every!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise RunError(f"steps must be an integer >= 0, got {steps!r}")
    for name, v in (("minutes", minutes), ("cpu_minutes", cpu_minutes)):
        if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise RunError(f"{name} must be a positive finite number, got {v!r}")
    mod = mod or default_model(cfg)
    par = parallel.from_env()  # under torchrun: this process's rank (inference/parallel.py)
    parallel.check(cfg, par)
    folder = Path(out) if out is not None else None
    if folder is not None:
        if par.main and not resume and not nothing_to_lose(folder) and not force:
            raise RunError(f"{folder} exists and is not empty (--resume to continue it, --force to overwrite)")
        if resume and not folder.is_dir():
            raise RunError(f"{folder}: no such run folder; nothing to resume")
        if par.main:
            folder.mkdir(parents=True, exist_ok=True)
    lock = writer_lock(folder) if folder is not None and par.main else contextlib.nullcontext()
    with lock, _terminate_as_interrupt():
        steps = steps if steps is not None else (None if minutes is not None or cpu_minutes is not None else 100)
        budget = Budget(steps, minutes, cpu_minutes)
        every = (None, eval_every_s) if eval_every_s is not None else (eval_every, None)
        schedule = Schedule(progress and par.main, *every, checkpoint_every_s, eval_puzzles, log if par.main else None)
        return _fit(cfg, folder, mod, data, resume, force, budget, schedule, par)


class Budget(NamedTuple):
    """When training stops: whichever of these runs out first (None: no limit of that kind)."""

    steps: int | None  # batches in all
    minutes: float | None  # wall minutes of training in all
    cpu_minutes: float | None  # CPU minutes of this process in all


class Schedule(NamedTuple):
    """What happens around the batches: the progress bar, evaluations, checkpoints, the log."""

    progress: bool
    eval_every: int | None  # batches between held-out evaluations (None: by time)
    eval_every_s: float | None  # seconds between them instead
    checkpoint_every_s: float
    eval_puzzles: int
    log: object  # a callable receiving one line per evaluation, or None


def _fit(cfg, folder, mod, data, resume, force, budget: Budget, schedule: Schedule, par) -> FitResult:
    if resume:  # the checkpoint is read once: its config is checked, then its state restored
        ckpt = read_checkpoint(folder)
        cfg = check_resume(folder, cfg, mod, force, ckpt.config)
    cfg = resolved(with_priors(cfg, mod.PRIORS))  # stored resolved: later default changes leave it as it is
    check_fit(cfg, task_for(cfg.task))  # before any memory is taken
    backend = get_backend(cfg.backend)
    backend.setup(cfg.fit.threads)
    if par.world > 1:
        backend.init_parallel(par)
    data = data or build_dataset(cfg.task)
    changed = data_changes(folder, data) if resume else []
    if changed and not force:
        raise RunError(f"refusing to resume {folder}: the data set built now differs from the one it was trained on "
                       f"(data.json; the task's generator changed?), --force to resume anyway:\n  " + "\n  ".join(changed))  # fmt: skip
    trainer = backend.make_trainer(mod, cfg, data.task, par)
    loop = TrainLoop(trainer, data, cfg, schedule.log, par)  # all validated before the folder is touched
    if par.main:
        _warn_kl_floor(cfg, data)
        if schedule.progress or schedule.log:
            print(start_line(cfg, folder, resume), file=sys.stderr, flush=True)
    if resume:
        loop.restore(ckpt, folder)
        if force:  # the run continues under the new config and model file: apply them now, record them with
            trainer.apply_hyperparameters()  # the first checkpoint (killed before it, the run resumes as it was)
            loop.pending_run_files = (cfg, mod, data if changed else None)  # changed data: data.json too
        if par.main and not changed and not (Path(folder) / DATA_FILE).is_file():  # a run from before data.json
            write_data_record(folder, data)  # records what it continues on
    elif folder is not None and par.main:
        create_run(folder, cfg, mod, force, data)
    writes = folder if par.main else None  # rank 0 alone writes the run folder
    loop.run(writes, budget, schedule)
    if par.world > 1:
        backend.close_parallel(par)  # every rank finished: leave the group before the interpreter exits
    return FitResult(loop.sampling_net(), trainer, loop.history, cfg, folder, loop.best_info)


def start_line(cfg: GramConfig, folder, resume: bool) -> str:
    """What a fit states when it starts: the run folder and the priors in force (they shape every
    sample), the guide's family, and the prior-path term where it is on."""
    where = f"{'resuming' if resume else 'run folder'} {folder}" if folder is not None else "no run folder (not saved)"
    line = f"{where}; priors: {describe_priors(cfg.priors)}; guide: {guide_family(cfg.fit, cfg.priors)}"
    rule = prior_path(cfg)
    if rule.weight:
        line += f"; prior path: weight {rule.weight:g}, target {rule.target!r}{', anchored' if rule.anchor else ''}"
    return line


def _warn_kl_floor(cfg: GramConfig, data: Dataset) -> None:
    """Warn when a guide outside the prior's family pays, at initialisation, a KL above the ceiling
    of every training input (the comparison of priors would then measure the guide family)."""
    family = guide_family(cfg.fit, cfg.priors)
    if cfg.fit.variant != "gram" or not cfg.fit.kl_cap_weight or family == cfg.priors.family:
        return
    at_init, best = kl_floor(family, cfg.priors.family, cfg.priors.df)
    positions = cfg.net.noise_tokens or (cfg.net.prefix_tokens + data.task.seq_len)
    dims = guided_dims(cfg.fit, positions, cfg.net.dim)
    counts = data.train.num_solutions  # (T,)
    caps = kl_ceiling(cfg.fit, counts, len(counts), log_count_unknown(data.task))  # (T,) inf: no ceiling
    ceiling = float(caps[np.isfinite(caps)].max()) if np.isfinite(caps).any() else cfg.fit.kl_cap
    if at_init * dims > ceiling:
        warnings.warn(
            f"a {family} guide under the {cfg.priors.family} prior pays a KL floor of {at_init * dims:.1f} nats per "
            f"supervision step at initialisation ({best * dims:.1f} at its best scale; {dims} dimensions), above the KL "
            f"ceiling of at most {ceiling:.1f} nats: the fit will be shaped by the guide family, not the prior "
            "(fit.guide_family=null puts the guide in the prior's family)",
            stacklevel=4,
        )


class TrainLoop:
    """Data order, history and checkpoints around a Trainer."""

    def __init__(self, trainer, data: Dataset, cfg: GramConfig, log=None, par: parallel.Parallel | None = None):
        self.trainer, self.data, self.cfg, self.log = trainer, data, cfg, log
        self.par = par or parallel.Parallel()  # under torchrun each rank trains on its shard of every batch
        self.x, self.y = data.train.x, data.train.y  # (N, L_x), (N, L_y) uint8
        self.n = data.train.num_solutions  # (N,) exact number of solutions of each training input
        self.rng = np.random.default_rng(cfg.fit.seed)
        self.augment = augments(cfg)  # fit.augment, or on under the orbit split (config.augments)
        trainer.target_pool = (self.x, self.y)  # the prior-path term's candidates under prior_path_target="train"
        self.pending_run_files = None  # (cfg, mod, data or None): run files to write at the next save (forced resume)
        self.perm, self.cursor, self.step, self.elapsed, self.history = None, 0, 0, 0.0, []
        self.cpu = 0.0  # CPU seconds of this process spent in training (a load-independent budget)
        self.best, self.best_info = None, None  # fit.keep_best: the best evaluation's weights, {step, metric, value}
        if len(self.x) < cfg.fit.batch_size:
            raise RunError(f"batch_size {cfg.fit.batch_size} exceeds the {len(self.x)} training examples")

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (B, L_x), y (B, L_y) and the inputs' numbers of solutions (B,), numpy (each
        backend moves them to its device); under torchrun this rank's B/P rows of them."""
        B = self.cfg.fit.batch_size
        if self.perm is None or self.cursor + B > len(self.perm):  # new epoch; the ragged tail is dropped
            self.perm, self.cursor = self.rng.permutation(len(self.x)), 0
        idx = self.perm[self.cursor : self.cursor + B]
        self.cursor += B
        x, y, n = self.x[idx], self.y[idx], self.n[idx]  # symmetries keep the number of solutions
        if self.augment:
            x, y = self.data.task.augment(self.rng)(x, y)
        return self.par.shard(x, y, n)  # one process: the whole batch

    def run(self, folder, budget: Budget, schedule: Schedule) -> None:
        """Train until the budget's batches, wall minutes or CPU minutes of this process run out
        (whichever comes first; budgets count from the start of the run, across resumes)."""
        from tqdm import tqdm  # text bar everywhere (tqdm.auto warns in notebooks without ipywidgets)

        steps, minutes, cpu_minutes = budget
        progress, eval_puzzles, checkpoint_every_s = (
            schedule.progress,
            schedule.eval_puzzles,
            schedule.checkpoint_every_s,
        )
        bar = _Progress(tqdm, steps, minutes, cpu_minutes, self, disable=not progress)
        if progress and getattr(self.trainer, "compiles_first", lambda: False)():
            tqdm.write("fit: compiling the NumPyro training step on the first batch (one program per supervision "
                       "step; about 1-2 minutes on a CPU core)", file=sys.stderr)  # fmt: skip
        last_eval = last_ckpt = time.monotonic()
        eval_gap = 0.0  # by time: 10x the last evaluation's seconds, so evaluating takes <= 1/10 of the run
        pending = None
        start, start_elapsed = time.monotonic(), self.elapsed
        cpu_start, start_cpu = time.process_time(), self.cpu
        try:
            while not self.budget_spent(steps, minutes, cpu_minutes):
                if self.cfg.fit.lr_decay:
                    self.trainer.set_lr_scale(self.cfg.fit.lr_scale(self.progress(steps, minutes, cpu_minutes)))
                pending = (self.perm, self.cursor, self.rng.bit_generator.state)  # the data order before this batch
                x, y, n = self.next_batch()
                info = self.trainer.train_batch(x, y, n)
                self.elapsed = start_elapsed + time.monotonic() - start
                self.cpu = start_cpu + time.process_time() - cpu_start
                record = {"step": self.step + 1, "seconds": round(self.elapsed, 3), "cpu_seconds": round(self.cpu, 3)}
                record["lr"] = self.cfg.fit.lr * self.trainer.lr_scale
                self.history.append({**record, **info._asdict()})
                self.step += 1
                pending = None
                bar.advance(loss=f"{info.loss:.3f}", ce=f"{info.ce:.3f}", kl=f"{sum(info.kl):.3f}")
                now = time.monotonic()
                due = (schedule.eval_every is not None and self.step % schedule.eval_every == 0) or (
                    schedule.eval_every_s is not None and now - last_eval >= max(schedule.eval_every_s, eval_gap)
                )
                if self.par.main and due:
                    self.evaluate(eval_puzzles)
                    last_eval, eval_gap = now, 10 * (time.monotonic() - now)
                if folder is not None and now - last_ckpt >= checkpoint_every_s:
                    self.save(folder)
                    last_ckpt = now
        except KeyboardInterrupt:  # Ctrl-C, wherever it lands: keep what was trained
            bar.close()
            self.interrupted(folder, pending)
            raise
        except NonFiniteLoss:
            bar.close()
            raise
        bar.close()
        if self.par.main and not (self.history and "eval" in self.history[-1]):  # unless the last batch had one
            self.evaluate(eval_puzzles)
        if folder is not None:
            self.save(folder)
        if progress:  # one line that stays (the bar itself is redrawn at most once a second)
            ev = next((r["eval"] for r in reversed(self.history) if "eval" in r), {})
            kept = self.best_info
            tqdm.write(f"fit: {self.step} batches, {self.elapsed:.0f} s; " + ", ".join(
                f"{k} {v:.3f}" for k, v in ev.items()) + (f"; sampling weights: the evaluation at batch {kept['step']} "
                f"({kept['metric']} {kept['value']:.3f}, fit.keep_best)" if kept else ""), file=sys.stderr)  # fmt: skip

    def budget_spent(self, steps, minutes, cpu_minutes) -> bool:
        """Whether any budget has run out (under torchrun: on any rank, so the ranks stop together)."""
        done = not (
            (steps is None or self.step < steps)
            and (minutes is None or self.elapsed < 60 * minutes)
            and (cpu_minutes is None or self.cpu < 60 * cpu_minutes)
        )
        return self.trainer.any_rank(done) if self.par.world > 1 else done

    def interrupted(self, folder, pending) -> None:
        """After Ctrl-C: drop a cut batch's records, restore its data order (it is drawn again on
        resume: no data is skipped) and save; raises Interrupted once something was saved."""
        self.history = [r for r in self.history if r["step"] <= self.step]  # a record counts with its batch
        if pending is not None:
            self.perm, self.cursor, self.rng.bit_generator.state = pending
        if folder is not None and self.step > 0:
            self.save(folder)
            raise Interrupted(f"interrupted after batch {self.step}; checkpoint saved in {folder}") from None

    def progress(self, steps, minutes, cpu_minutes) -> float:
        """The share of the training budget used so far (the budget that ends first); under
        torchrun the largest over the ranks, so that every rank uses one learning rate."""
        shares = [self.step / steps if steps else 1.0] if steps is not None else []
        if minutes is not None:
            shares.append(self.elapsed / (60 * minutes) if minutes else 1.0)
        if cpu_minutes is not None:
            shares.append(self.cpu / (60 * cpu_minutes) if cpu_minutes else 1.0)
        share = min(1.0, max(shares, default=0.0))
        return self.trainer.max_over_ranks(share) if self.par.world > 1 else share

    def evaluate(self, eval_puzzles: int) -> dict:
        """Validity of one prior sample and one guide sample per held-out puzzle; the training RNG
        is untouched (forked)."""
        backend = get_backend(self.cfg.backend)
        report = held_out_validity(backend, self.trainer, self.data.task, self.data.test, eval_puzzles,
                                   seed_for(self.cfg, "eval"))  # fmt: skip
        record = {"step": self.step, "seconds": round(self.elapsed, 3), "cpu_seconds": round(self.cpu, 3)}
        record["eval"] = report
        record["eval_puzzles"] = min(eval_puzzles, len(self.data.test.x))  # the trials behind each share
        draws = prior_draws(self.data.test, eval_puzzles)
        if draws != record["eval_puzzles"]:  # generation: the prior shares count draws from the blank input
            record["prior_draws"] = draws
        self.history.append(record)
        if keeps_best(self.cfg):
            self.keep_if_best(backend, report, draws)
        if self.log is not None:
            self.log(f"step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
        return report

    def keep_if_best(self, backend, report: dict, draws: int) -> None:
        """fit.keep_best: copy the sampling weights when this evaluation scores at least the best so far
        (ties: the later weights). The score is the distinct valid boards among the `draws` prior
        draws (`prior_distinct_valid`: a prior collapsed onto one grid scores 1/draws, not 100%), or
        the prior validity where that is not reported (a single evaluation input). Fewer than two
        distinct valid boards is never kept (one grid says nothing about generating: a collapse onto
        a copied training grid looks like that); until an evaluation qualifies, the latest weights
        are sampled."""
        metric = "prior_distinct_valid" if "prior_distinct_valid" in report else "prior_valid"
        if round(report[metric] * draws) < min(2, draws):
            return
        if self.best_info is not None and report[metric] < self.best_info["value"]:
            return
        weights = backend.weights(self.trainer.sampling_net())  # views of the live parameters: copied
        self.best = {k: np.array(v, copy=True) for k, v in weights.items()}
        self.best_info = {"step": self.step, "metric": metric, "value": report[metric]}

    def sampling_net(self):
        """The networks to sample from: the best evaluation's weights under fit.keep_best (once
        there was one), else the trainer's own."""
        if self.best is None:
            return self.trainer.sampling_net()
        return get_backend(self.cfg.backend).net_from_weights(self.cfg, self.data.task, self.best)

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        loop = {"data_rng": self.rng.bit_generator.state, "cursor": self.cursor, "step": self.step,
                "elapsed": self.elapsed, "cpu_seconds": self.cpu}  # fmt: skip
        if self.best_info is not None:
            loop["best"] = self.best_info
        return Checkpoint(self.cfg.backend, self.trainer.state(), loop, self.perm, self.history, self.cfg, self.best)

    def save(self, folder: Path) -> None:
        with _signals_deferred():  # a Ctrl-C during the write lands after it, where the loop saves cleanly
            write_checkpoint(folder, self.checkpoint())
            if self.pending_run_files is not None:  # a forced resume's new config and model file, recorded
                write_run_files(folder, *self.pending_run_files)  # with the first checkpoint trained under them
                self.pending_run_files = None

    def restore(self, ckpt: Checkpoint, folder: Path) -> None:
        """The trainer, data order, counters and history from a checkpoint (`read_checkpoint`)."""
        if ckpt.backend != self.cfg.backend:
            raise RunError(f"{folder}: a {ckpt.backend} checkpoint, not {self.cfg.backend} (gram convert moves runs)")
        with checkpoint_errors(folder):
            self.trainer.load_state(ckpt.trainer)
            loop = ckpt.loop
            self.rng.bit_generator.state = loop["data_rng"]
            self.perm = ckpt.perm
            self.cursor, self.step, self.elapsed = loop["cursor"], loop["step"], loop["elapsed"]
            self.cpu = float(loop["cpu_seconds"])
            if ckpt.best is not None and keeps_best(self.cfg):  # (a forced resume may have turned it off)
                self.best, self.best_info = ckpt.best, dict(loop["best"])
        self.history = ckpt.history


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a job scheduler's stop, `kill PID`) is handled as Ctrl-C while fitting: the loop
    saves a checkpoint and stops. Main thread only (signal handlers cannot be set elsewhere)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM held back for the `with` block and acted on when it ends: a checkpoint
    write is never cut in the middle (an exception raised inside torch.save's C++ writer could
    leave it unusable for the save that follows the interrupt). A handler that records the signal,
    not a signal mask: a process-directed signal would go to another thread (torch's) past a mask.
    Main thread only, as signal handlers."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # Ctrl-C's KeyboardInterrupt, or fit's SIGTERM-as-interrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


class _Progress:
    """The fit's progress bar: batches against `steps`, or seconds against a `minutes` /
    `cpu_minutes` budget (so tqdm shows the time left), batches and losses in the postfix. Redrawn
    at most once a second on a terminal, once every 10 seconds elsewhere (a notebook keeps every
    redraw as an output; a log file every line)."""

    def __init__(self, tqdm, steps, minutes, cpu_minutes, loop, disable: bool):
        self.loop = loop
        if steps is not None:
            self.clock, total, initial, unit = None, steps, loop.step, "batch"
        elif minutes is not None:
            self.clock, total, initial, unit = "elapsed", 60 * minutes, loop.elapsed, "s"
        else:
            self.clock, total, initial, unit = "cpu", 60 * cpu_minutes, loop.cpu, "s"
        fmt = (
            None
            if self.clock is None
            else "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
        )
        self.bar = tqdm(total=total, initial=initial, disable=disable, desc="fit" if self.clock is None else
                        ("fit (wall budget)" if self.clock == "elapsed" else "fit (CPU budget)"), unit=unit,
                        bar_format=fmt, mininterval=1.0 if sys.stderr.isatty() else 10.0)  # fmt: skip

    def advance(self, **postfix) -> None:
        if self.clock is None:
            self.bar.update(1)
        else:
            used = self.loop.elapsed if self.clock == "elapsed" else self.loop.cpu
            self.bar.update(min(used, self.bar.total) - self.bar.n)
            postfix = {"batch": self.loop.step, **postfix}
        self.bar.set_postfix(**postfix, refresh=False)  # redrawn with the bar, at most once a second

    def close(self) -> None:
        self.bar.close()


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after a checkpoint was saved (the CLI exits with 130)."""
