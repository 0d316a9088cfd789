"""Loading a run folder for sampling (the networks and their weights only; the data set on
first use) and moving a run between backends (weights as numpy arrays, torch's names)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from pathlib import Path

from gram_ppl.config import GramConfig, keeps_best
from gram_ppl.data import Dataset, build_dataset
from gram_ppl.inference.backend import get_backend
from gram_ppl.inference.runfolder import (
    DATA_FILE,
    RunError,
    atomic_write,
    create_run,
    data_changes,
    is_empty,
    load_config,
    read_checkpoint,
    write_checkpoint,
    writer_lock,
)
from gram_ppl.tasks import task_for


def default_model(cfg: GramConfig):
    from gram_ppl.models import get_model

    return get_model(cfg.backend)


@contextlib.contextmanager
def checkpoint_errors(folder):
    """A checkpoint whose contents do not fit the networks or the loop is a RunError naming it."""
    try:
        yield
    except RunError:
        raise
    except Exception as e:  # a refused pickle (UnpicklingError), a flax shape error, a torch size mismatch...
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise RunError(f"{Path(folder) / 'checkpoint.pt'}: cannot be loaded ({type(e).__name__}: {first})") from None


class LoadedRun:
    """A run loaded for sampling: its config, the networks to sample from (EMA when enabled: a
    torch module, or svi_numpyro.Bound), the model module, the task; the data set is built only
    when `data` is first used (sampling user puzzles never needs it). Unpacks as
    (config, net, data, mod)."""

    def __init__(self, config: GramConfig, net, mod, data: Dataset | None = None, folder: Path | None = None,
                 best: dict | None = None):  # fmt: skip
        self.config, self.net, self.mod, self._data = config, net, mod, data
        self.folder = folder  # the run folder it was loaded from (its data.json checks the data set built)
        self.best = best  # fit.keep_best: {step, metric, value} of the evaluation whose weights `net` holds

    @functools.cached_property
    def task(self):
        return task_for(self.config.task)

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = build_dataset(self.config.task)
            if self.folder is not None:
                _warn_data_drift(self.folder, self.config, self._data)
        return self._data

    def __iter__(self):
        return iter((self.config, self.net, self.data, self.mod))


def _warn_data_drift(folder, cfg: GramConfig, data: Dataset) -> None:
    """Warn when the data set built now is not the one the run was trained on: data.json's
    arrays differ (a task generator changed), or a run from before data.json whose config left
    the data set's sizes to defaults (they are today's, which may not be the run's)."""
    changed = data_changes(folder, data)
    if changed:
        warnings.warn(
            f"{folder}: the data set built now differs from the one the run was trained on (data.json; the task's "
            f"generator changed?): held-out scores are not comparable and may include training inputs: "
            + "; ".join(changed[:4]),
            stacklevel=3,
        )
    elif not (Path(folder) / DATA_FILE).is_file() and cfg.task != cfg.task.resolved():
        filled = {k: v for k, v in dataclasses.asdict(cfg.task.resolved()).items() if getattr(cfg.task, k) != v}
        warnings.warn(
            f"{folder} records neither its data set nor its sizes (a run from before data.json): built with "
            f"today's defaults {filled}, which may not be those it was trained with",
            stacklevel=3,
        )


def load_run(folder: str | Path, mod=None, as_backend: str | None = None, latest: bool = False) -> LoadedRun:
    """Config, sampling network and model module of a finished or checkpointed run (under
    fit.keep_best the weights of its best evaluation, once there was one, unless `latest`): the
    networks and their weights only (no optimiser; the data set is not rebuilt: `LoadedRun.data`
    builds it on first use). With `as_backend` the weights are converted to that backend's
    networks in memory (the forward passes agree to float32 rounding, tests/test_flax_nets.py)."""
    cfg = load_config(folder)
    mod = mod if mod is not None and as_backend in (None, cfg.backend) else default_model(cfg)
    backend = get_backend(cfg.backend)
    backend.setup(cfg.fit.threads)
    ckpt = read_checkpoint(Path(folder))
    if ckpt.backend != cfg.backend:
        raise RunError(f"{folder}: config.json says {cfg.backend}, the checkpoint is {ckpt.backend}")
    best = ckpt.loop.get("best") if keeps_best(cfg) and ckpt.best is not None and not latest else None
    with checkpoint_errors(folder):
        if best is not None:  # the best evaluation's weights (fit.keep_best)
            net = backend.net_from_weights(cfg, task_for(cfg.task), ckpt.best)
        else:
            net = backend.sampling_net(cfg, task_for(cfg.task), ckpt.trainer)
    run = LoadedRun(cfg, net, mod, folder=Path(folder), best=best)
    return run if as_backend in (None, cfg.backend) else convert_loaded(run, as_backend)


def convert_loaded(run: LoadedRun, backend: str) -> LoadedRun:
    """The same run with its sampling weights moved to `backend`'s networks and model file
    (weights travel as numpy arrays named as torch names them: gram_ppl/networks/convert.py)."""
    cfg = dataclasses.replace(run.config, backend=backend)
    target = get_backend(backend)
    target.setup(cfg.fit.threads)
    net = target.net_from_weights(cfg, run.task, get_backend(run.config.backend).weights(run.net))
    return LoadedRun(cfg, net, default_model(cfg), run._data, run.folder, run.best)


def convert_run(folder: str | Path, out: str | Path, backend: str, force: bool = False) -> Path:
    """A new run folder holding `folder`'s run for `backend`: config (backend changed), that
    backend's model file, history, and a checkpoint with the converted sampling weights and a
    fresh optimiser (training can go on with --resume, from the converted weights)."""
    cfg = load_config(folder)
    if cfg.backend == backend:
        raise RunError(f"{folder} is already a {backend} run")
    ckpt = read_checkpoint(Path(folder))  # read once: its weights, history and data order move over
    if ckpt.backend != cfg.backend:
        raise RunError(f"{folder}: config.json says {cfg.backend}, the checkpoint is {ckpt.backend}")
    task = task_for(cfg.task)
    source = get_backend(cfg.backend)
    source.setup(cfg.fit.threads)
    with checkpoint_errors(folder):
        weights = source.weights(source.sampling_net(cfg, task, ckpt.trainer))
    return _write_run(folder, out, dataclasses.replace(cfg, backend=backend), weights, ckpt, force)


def convert_weights_run(folder: str | Path, out: str | Path, cfg, weights: dict, force: bool = False) -> Path:
    """A new run folder holding `folder`'s run under config `cfg` (same backend, same data) with the
    sampling weights `weights` (numpy, named as torch names them) and a fresh optimiser; a kept
    best evaluation (fit.keep_best) is dropped: `weights` are what the new run samples from."""
    ckpt = read_checkpoint(Path(folder))
    loop = {k: v for k, v in ckpt.loop.items() if k != "best"}
    return _write_run(folder, out, cfg, weights, ckpt._replace(best=None, loop=loop), force)


def _write_run(folder, out, new, weights: dict, ckpt, force: bool) -> Path:
    """Write run folder `out`: config `new`, its model file, `folder`'s data fingerprint and history,
    and a checkpoint whose trainer holds `weights` with a fresh optimiser."""
    task = task_for(new.task)
    mod = default_model(new)
    out = Path(out)
    if not is_empty(out) and not force:  # before any work, and before the folder is touched
        raise RunError(f"{out} exists and is not empty (--force to overwrite)")
    target = get_backend(new.backend)
    target.setup(new.fit.threads)
    trainer = target.make_trainer(mod, new, task)
    with checkpoint_errors(folder):  # weights that do not fit: refused before anything is written
        trainer.set_weights(weights)  # the sampling weights, a fresh optimiser
        state = trainer.state()
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out):  # a run being trained there holds the lock: refused, not overwritten
        create_run(out, new, mod, force)
        if (Path(folder) / DATA_FILE).is_file():  # the same data set: its fingerprint moves over
            atomic_write(out / DATA_FILE, (Path(folder) / DATA_FILE).read_bytes())
        write_checkpoint(out, ckpt._replace(backend=new.backend, trainer=state, config=new))
    return out
