"""The run-folder format: create, write, load, check, lock (docs/formats.md).

A run folder holds config.json (the GramConfig, priors filled in), model.py (the model file's
source), priors.py (the PRIORS block's file, models/priors.py), data.json (the data set's
fingerprint), checkpoint.pt and history.json. What the format guarantees:

- **One atomic commit.** checkpoint.pt is one file holding the training state, the history and
  the config it was trained with, plus the sha256 of all of it: written under a temporary name,
  fsynced, renamed over the old one, the folder fsynced. A kill at any moment leaves either the
  old or the new checkpoint, each whole and consistent with its own history. history.json is a
  readable copy of the checkpoint's history, written after it (the checkpoint is the truth).
- **One writer.** A writer (fit, resume) holds an exclusive lock on `.lock` for its whole run;
  a second writer is refused with the holder's pid. Readers take no lock: they only ever see a
  committed checkpoint.
- **What was trained is what is recorded.** On resume the checkpoint's config is compared with
  config.json (hand edits are refused unless forced) and with the config asked for. The task's
  config is stored resolved (every size default filled in) and data.json holds the sha256 of
  every array of the data set, so a later change of defaults or of a task's generator cannot
  silently change the data a run resumes or is evaluated on.
- Loading never unpickles objects: checkpoint.json is JSON, perm.npy is loaded without pickle,
  the trainer's file is read by its backend (`torch.load(weights_only=True)`, flax msgpack).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import errno
import hashlib
import inspect
import io
import json
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gram_ppl import fileio
from gram_ppl.config import (
    ConfigError,
    GramConfig,
    config_differences,
    gram_config_from_dict,
    resolved,
    rules_from,
    to_dict,
    unresolved,
    with_priors,
)

FORMAT = 3  # 1: checkpoint.pt + checkpoint.sha256 + history.json written one after another;
# 2: one torch.save file for both backends; 3: one zip, each backend's own serialiser inside
WRITTEN = (
    "config.json", "model.py", "priors.py", "data.json", "checkpoint.pt", "history.json", "checkpoint.sha256", ".lock",
)  # fmt: skip
DATA_FILE = "data.json"  # the data set's fingerprint (gram_ppl.data.fingerprint)


class RunError(ValueError):
    """A run folder that cannot be used as asked: exists, differs, is locked or corrupted."""


# ---- writing files ---------------------------------------------------------------------
def atomic_write(path: Path, data: bytes | str) -> None:
    """gram_ppl.fileio.atomic_write (temporary file, fsync, rename, folder fsync), refusing a
    symlink, device or other non-regular `path` (never replaced, never written through)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise RunError(f"{path}: not a regular file; refusing to replace it")
    fileio.atomic_write(path, data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the lock ----------------------------------------------------------------------------
@contextlib.contextmanager
def writer_lock(folder: Path):
    """Hold the folder's exclusive writer lock (fcntl.flock on `.lock`) for the `with` block."""
    import fcntl
    import stat

    folder = Path(folder)
    try:  # never through a link: a `.lock` symlink would have us truncate and write its target
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunError(f"{folder / '.lock'} is a symbolic link; refusing to use it as the writer lock") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, device or folder named .lock
        os.close(fd)
        raise RunError(f"{folder / '.lock'} is not a regular file; refusing to use it as the writer lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunError(f"{folder} is in use by another writer (pid {holder}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for name in WRITTEN:  # temporaries of a writer that was killed mid-write (we hold the lock)
            for stale in folder.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- config and model file -----------------------------------------------------------------
def create_run(folder: Path, cfg: GramConfig, mod, force: bool, data=None) -> None:
    """A new run folder; an existing non-empty one only with `force`, and then only the files
    this tool writes are removed (anything else in it is kept)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder} exists and is not a folder")
    if not nothing_to_lose(folder) and not force:
        raise RunError(f"{folder} exists and is not empty (--resume to continue it, --force to overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("checkpoint.pt", "checkpoint.sha256", "history.json", DATA_FILE):
        (folder / stale).unlink(missing_ok=True)
    write_run_files(folder, cfg, mod, data)


def is_empty(folder: Path) -> bool:
    """No folder, or nothing in it but the writer lock."""
    folder = Path(folder)
    return not folder.exists() or all(p.name == ".lock" for p in folder.iterdir())


def nothing_to_lose(folder: Path) -> bool:
    """No folder, or one holding only what a run writes before its first checkpoint (config.json,
    model.py, the writer lock, temporaries of a killed write): a start killed that early is
    started again by the same command, without --force."""
    folder = Path(folder)
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    early = {"config.json", "model.py", "priors.py", DATA_FILE, ".lock"}
    return all(p.name in early or (p.name.startswith(".") and p.name.endswith(".tmp")) for p in folder.iterdir())


def write_run_files(folder: Path, cfg: GramConfig, mod, data=None) -> None:
    """config.json, the model file as model.py and the PRIORS block's file as priors.py: the
    whole generative story the run was trained with (the resume check compares both files);
    with `data`, data.json, its fingerprint."""
    atomic_write(folder / "config.json", json.dumps(to_dict(cfg), indent=1) + "\n")
    atomic_write(folder / "model.py", inspect.getsource(mod))
    atomic_write(folder / "priors.py", _priors_source())
    if data is not None:
        write_data_record(folder, data)


def _priors_source() -> str:
    from gram_ppl.models import priors

    return inspect.getsource(priors)


def write_data_record(folder: Path, data) -> None:
    """data.json: the fingerprint of the data set the run trains on (resolved task config, the
    sha256 of every array)."""
    from gram_ppl.data import fingerprint

    atomic_write(Path(folder) / DATA_FILE, json.dumps(fingerprint(data), indent=1) + "\n")


def data_changes(folder: str | Path, data) -> list[str]:
    """How `data`, built now from the run's config, differs from the data set the run was
    trained on (data.json): the arrays whose bytes changed. Empty when they agree or when the
    run predates data.json."""
    from gram_ppl.data import DatasetError, fingerprint_changes, read_fingerprint

    path = Path(folder) / DATA_FILE
    if not path.is_file():
        return []
    try:
        recorded = read_fingerprint(path)
    except DatasetError as e:
        raise RunError(str(e)) from None
    return fingerprint_changes(recorded, data)


def _defaults_from(asked: GramConfig, stored: GramConfig) -> GramConfig:
    """The config `asked` for, with what it leaves to defaults (None) taken from the run's
    `stored` one: the task's fields where it is the same task and size, and the fit rules
    and net (config.RULE_FIELDS) that the run was built and trained under and today's defaults no
    longer give."""
    task, kept = asked.task, unresolved(stored)
    if (task.name, task.size) == (stored.task.name, stored.task.size):
        names = [f.name for f in dataclasses.fields(task) if getattr(task, f.name) is None]
        task = dataclasses.replace(task, **{k: getattr(stored.task, k) for k in names})
    return rules_from(dataclasses.replace(asked, task=task), kept)


def load_config(folder: str | Path) -> GramConfig:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: cannot be read ({e})") from None
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"a JSON object is expected, not a {type(data).__name__}")
        return gram_config_from_dict(data)
    except (ConfigError, TypeError, AttributeError) as e:
        raise RunError(f"{path}: not a valid config ({e})") from None


def check_resume(
    folder: Path | None, cfg: GramConfig | None, mod, force: bool, trained: GramConfig | None
) -> GramConfig:
    """The config to resume with, after checking that neither config.json (against `trained`,
    the config the checkpoint was trained with: `Checkpoint.config`), nor the requested config, nor
    the model file changed."""
    if folder is None:
        raise RunError("resume needs a run folder")
    stored = load_config(folder)
    problems = []
    if trained is not None:  # compared resolved: runs written before the task was stored resolved
        problems += [
            f"config.json {k}: {b!r}, but the checkpoint was trained with {a!r}"
            for k, a, b in _diff(to_dict(resolved(trained)), to_dict(resolved(stored)))
        ]
    if cfg is not None:
        # what the request leaves to defaults is what the run has (a later release may default otherwise)
        cfg = _defaults_from(cfg, stored)
        wanted = resolved(with_priors(cfg, stored.priors))
        problems += [f"config {k}: {a!r} -> {b!r}" for k, a, b in _diff(to_dict(resolved(stored)), to_dict(wanted))]
    model_file = Path(folder) / "model.py"
    if not model_file.is_file() or not same_code(model_file.read_text(), inspect.getsource(mod)):
        problems.append(f"the model file {inspect.getsourcefile(mod)} differs from {model_file}")
    priors_file = Path(folder) / "priors.py"  # runs written before it was recorded have none
    if priors_file.is_file() and not same_code(priors_file.read_text(), _priors_source()):
        from gram_ppl.models import priors

        problems.append(f"the PRIORS file {inspect.getsourcefile(priors)} differs from {priors_file}")
    if problems and not force:
        raise RunError("refusing to resume, the run changed (--force to resume anyway):\n  " + "\n  ".join(problems))
    return cfg if (cfg is not None and force) else stored


def model_file_note(folder: str | Path) -> str | None:
    """A warning when the model file a run would be sampled with differs from the run's model.py
    (the run was trained with another generative story), else None."""
    from gram_ppl.models import get_model

    mod = get_model(load_config(folder).backend)
    saved = Path(folder) / "model.py"
    if saved.is_file() and same_code(saved.read_text(), inspect.getsource(mod)):
        return None
    return f"{inspect.getsourcefile(mod)} differs from {saved}: sampling with the current model file"


def same_code(saved: str, now: str) -> bool:
    """Whether two versions of a model (or PRIORS) file hold the same code: their syntax trees
    compared with docstrings left out (comments and layout never reach the tree), so a reworded
    docstring does not mark every run as trained with another generative story, while any change
    to a statement, a name or a constant does. A file that does not parse is compared as text."""
    try:
        return ast.dump(_without_docstrings(ast.parse(saved))) == ast.dump(_without_docstrings(ast.parse(now)))
    except SyntaxError:
        return saved == now


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _diff(a: dict, b: dict, prefix: str = ""):
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            yield f"{prefix}{k}", va, vb


# ---- the checkpoint --------------------------------------------------------------------
class Checkpoint(NamedTuple):
    """What a checkpoint commits together (docs/formats.md)."""

    backend: str  # "pyro" or "numpyro": who wrote `trainer`
    trainer: bytes  # the backend trainer's own serialisation (Trainer.state(): torch.save or flax msgpack)
    loop: dict  # data order and counters of the training loop (JSON values)
    perm: np.ndarray | None  # (N,) the current epoch's permutation of the training set
    history: list[dict]  # every batch and evaluation record so far
    config: GramConfig | None  # the config it was trained with (None: format 1)
    # fit.keep_best: the sampling weights of the best evaluation (numpy, named as torch names them:
    # backend-neutral; loop["best"] says which evaluation), or None
    best: dict[str, np.ndarray] | None = None


STATE_FILES = {"pyro": "trainer.pt", "numpyro": "trainer.msgpack"}


def write_checkpoint(folder: Path, ckpt: Checkpoint) -> None:
    """Commit the trainer state, loop state, history and config in one atomic step: one zip
    archive (checkpoint.json, the trainer's file, perm.npy, best.npz under fit.keep_best),
    checkpoint.json holding the sha256 of the other members."""
    members = {STATE_FILES[ckpt.backend]: ckpt.trainer}
    if ckpt.perm is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(ckpt.perm, dtype=np.int64), allow_pickle=False)
        members["perm.npy"] = buf.getvalue()
    if ckpt.best is not None:
        buf = io.BytesIO()
        np.savez(buf, **ckpt.best)
        members["best.npz"] = buf.getvalue()
    meta = {
        "format": FORMAT,
        "backend": ckpt.backend,
        "sha256": {name: sha256(data) for name, data in members.items()},
        "loop": ckpt.loop,
        "config": to_dict(ckpt.config),
        "history": ckpt.history,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("checkpoint.json", json.dumps(meta))
        for name, data in members.items():
            z.writestr(name, data)
    try:
        atomic_write(folder / "checkpoint.pt", out.getvalue())
        atomic_write(folder / "history.json", json.dumps(ckpt.history) + "\n")  # a readable copy
    except OSError as e:
        raise RunError(f"{folder / 'checkpoint.pt'}: cannot be written ({e}); the last checkpoint is kept") from None
    (folder / "checkpoint.sha256").unlink(missing_ok=True)  # format 1's separate hash


def read_checkpoint(folder: Path) -> Checkpoint:
    """The committed checkpoint; RunError for a missing, truncated, tampered or foreign file.
    Nothing is unpickled (formats 1-2, torch files, load with `torch.load(weights_only=True)`)."""
    path = Path(folder) / "checkpoint.pt"
    if not path.is_file():
        raise RunError(f"{path}: missing; nothing to resume")
    try:
        z = zipfile.ZipFile(path)
        names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:  # 0 bytes, truncated, a pickle
        raise RunError(f"{path}: corrupted or truncated checkpoint, or not one ({type(e).__name__})") from None
    with z:
        if "checkpoint.json" not in names:
            return _read_torch(Path(folder))  # formats 1 and 2
        try:
            meta = json.loads(z.read("checkpoint.json"))
            members = {name: z.read(name) for name in meta["sha256"]}
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
            raise RunError(f"{path}: corrupted or truncated checkpoint ({type(e).__name__}: {e})") from None
    if any(sha256(data) != meta["sha256"][name] for name, data in members.items()):
        raise RunError(f"{path}: checksum mismatch (corrupted or truncated checkpoint)")
    problem = _check_meta(meta)
    if problem:
        raise RunError(f"{path}: cannot be loaded ({problem})")
    try:
        perm = np.load(io.BytesIO(members["perm.npy"]), allow_pickle=False) if "perm.npy" in members else None
        best = None
        if "best.npz" in members:
            with np.load(io.BytesIO(members["best.npz"]), allow_pickle=False) as f:
                best = {name: f[name] for name in f.files}
        backend = meta["backend"]
        return Checkpoint(backend, members[STATE_FILES[backend]], meta["loop"], perm, meta["history"],
                          gram_config_from_dict(meta["config"]), best)  # fmt: skip
    except (KeyError, ValueError, TypeError, ConfigError, zipfile.BadZipFile) as e:
        raise RunError(f"{path}: cannot be loaded ({type(e).__name__}: {e})") from None


def _check_meta(meta) -> str | None:
    """What is wrong with checkpoint.json's fields (types and the format number), or None: a
    checkpoint from a newer gram_ppl, or with a field of the wrong type, is refused before use."""
    if not isinstance(meta, dict):
        return "checkpoint.json is not a JSON object"
    fmt = meta.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or not 3 <= fmt <= FORMAT:
        return f"format {fmt!r}: this gram_ppl reads checkpoint format {FORMAT} (a newer version wrote it?)"
    loop = meta.get("loop")
    if not isinstance(loop, dict):
        return "loop: not a JSON object"
    for key, kinds in (("step", int), ("cursor", int), ("elapsed", (int, float)), ("cpu_seconds", (int, float)),
                       ("data_rng", dict)):  # fmt: skip
        v = loop.get(key)
        if not isinstance(v, kinds) or isinstance(v, bool) or (not isinstance(v, dict) and v < 0):
            return f"loop.{key} is {v!r}, expected a non-negative {getattr(kinds, '__name__', 'number')}"
    if not isinstance(meta.get("history"), list) or not all(isinstance(r, dict) for r in meta["history"]):
        return "history: not a list of records"
    return None


def _read_torch(folder: Path) -> Checkpoint:
    """A format 1 or 2 checkpoint (torch.save files, both backends), as a Checkpoint."""
    import torch

    path = folder / "checkpoint.pt"
    try:
        outer = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a refused pickle, a foreign zip: one user-level error
        raise RunError(f"{path}: corrupted or truncated checkpoint, or not one ({type(e).__name__})") from None
    if not isinstance(outer, dict):
        raise RunError(f"{path}: not a gram checkpoint")
    if "payload" not in outer:  # format 1: hash and history beside it
        digest = folder / "checkpoint.sha256"
        if not digest.is_file() or digest.read_text().strip() != sha256(path.read_bytes()):
            raise RunError(f"{path}: checksum mismatch (corrupted or truncated checkpoint)")
        try:
            state, history = outer, json.loads((folder / "history.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(f"{folder / 'history.json'}: cannot be read ({e})") from None
    else:
        payload = outer["payload"].numpy().tobytes()
        if sha256(payload) != outer.get("sha256"):
            raise RunError(f"{path}: checksum mismatch (corrupted or truncated checkpoint)")
        try:
            state = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
            history = json.loads(state.pop("history"))
        except Exception as e:
            raise RunError(f"{path}: cannot be loaded ({type(e).__name__}: {e})") from None
    try:
        if "numpyro" in state:
            backend, trainer = "numpyro", state["numpyro"].numpy().tobytes()
        else:
            backend, buf = "pyro", io.BytesIO()
            torch.save({k: state[k] for k in ("net", "ema", "opt", "torch_rng")}, buf)
            trainer = buf.getvalue()
        loop = {k: state[k] for k in ("data_rng", "cursor", "step", "elapsed")}
        loop["data_rng"] = json.loads(loop["data_rng"])
        loop["cpu_seconds"] = float(state.get("cpu_seconds", 0.0))  # older checkpoints lack it
        perm = state["perm"].numpy() if state.get("perm") is not None else None
        config = gram_config_from_dict(json.loads(state["config"])) if "config" in state else None
    except (KeyError, ValueError, TypeError, ConfigError) as e:
        raise RunError(f"{path}: cannot be loaded ({type(e).__name__}: {e})") from None
    return Checkpoint(backend, trainer, loop, perm, history, config)


def read_history(folder: str | Path) -> list[dict]:
    """A run's history, from its committed checkpoint when there is one."""
    folder = Path(folder)
    if (folder / "checkpoint.pt").is_file():
        return read_checkpoint(folder).history
    path = folder / "history.json"
    if not path.is_file():
        raise RunError(f"{folder}: no checkpoint and no history.json")
    return json.loads(path.read_text())


def check_report_folder(out, force: bool) -> None:
    """Refuse, before any work, to write a report over another one (unless `force`)."""
    if (Path(out) / "summary.md").exists() and not force:
        raise RunError(f"{out}: a report is already there (force to replace it)")


def check_fits(folder, fits, mixed: bool = False) -> None:
    """R-hat compares chains of one posterior: refuse fits whose configs differ from `folder`'s
    in more than the seed (naming the fields), unless `mixed`; another task is always refused."""
    cfg = load_config(folder)
    for other in fits:
        diff = config_differences(cfg, load_config(other))
        if any(d.startswith("task.") for d in diff) or (diff and not mixed):
            raise RunError(f"{other}: its config differs from {folder}'s in {', '.join(diff)}; R-hat across fits "
                           "needs fits of one model that differ in the seed alone (mixed=True / --mixed-configs "
                           "to compute it anyway)")  # fmt: skip
