"""Build, save and load puzzle data sets with checksums (numpy and the standard library only).

A data set folder holds `train.npz` and `test.npz` (arrays x, y, num_solutions; see
`gram_ppl.tasks.base.Split`) and `manifest.json`: the resolved TaskConfig, the counts, the
number of solutions of each test input, the sha256 of each file and of each array, and the
package version. Files are written byte-for-byte deterministically (fixed zip timestamps), so
the same config and seed give the same bytes. A folder is written under a temporary name and
renamed into place, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gram_ppl._version import __version__
from gram_ppl.config import TaskConfig, from_dict, to_dict
from gram_ppl.tasks import Split, task_for

FORMAT_VERSION = 1
SPLITS = ("train", "test")
OURS = {"manifest.json", "train.npz", "test.npz"}  # what a data set folder holds
ARRAYS = ("x", "y", "num_solutions")


class DatasetError(ValueError):
    """A data set folder that is missing, tampered with, truncated or of an unknown format."""


@dataclass(frozen=True)
class Dataset:
    config: TaskConfig  # resolved: every default filled in
    train: Split
    test: Split

    @functools.cached_property
    def task(self):
        return task_for(self.config)


def fingerprint(ds: Dataset) -> dict:
    """What identifies a data set: its resolved TaskConfig and the dtype, shape and sha256 of
    every array of both splits (the manifest's records; run folders keep it as data.json)."""
    arrays = {f"{name}/{k}": _array_record(v) for name in SPLITS for k, v in getattr(ds, name).arrays().items()}
    return {"config": to_dict(ds.config), "arrays": arrays}


def read_fingerprint(path: str | Path) -> dict:
    """A fingerprint kept in a file (a run folder's data.json), refused with the file's name when
    it cannot be read or holds no array records."""
    try:
        record = json.loads(Path(path).read_text())
        record["arrays"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    return record


def fingerprint_changes(recorded: dict, ds: Dataset) -> list[str]:
    """How `ds` differs from a recorded fingerprint: the arrays whose bytes changed, each with
    its dtype, shape and sha256 then and now. Empty when they agree."""
    recorded, now = recorded["arrays"], fingerprint(ds)["arrays"]
    return [
        f"{k}: {_shape(recorded.get(k))} -> {_shape(now.get(k))}" for k in sorted(set(recorded) | set(now))
        if recorded.get(k) != now.get(k)
    ]  # fmt: skip


def _shape(record) -> str:
    if not isinstance(record, dict):
        return "absent"
    return f"{record.get('dtype')} {tuple(record.get('shape', ()))} sha256 {str(record.get('sha256'))[:12]}"


def build_dataset(cfg: TaskConfig) -> Dataset:
    """Generate the train and test splits for `cfg`; deterministic in cfg.seed."""
    cfg = cfg.resolved()
    rng = np.random.default_rng(cfg.seed)
    train, test = task_for(cfg).build_splits(cfg, rng)
    return Dataset(cfg, train, test)


def save_dataset(ds: Dataset, out: str | Path, overwrite: bool = False) -> Path:
    """Write `ds` to the folder `out` atomically; refuse an existing non-empty folder unless
    `overwrite`. Returns the folder."""
    given = Path(out)
    out = given.resolve()  # `.` or `..`: the folder by its real name and parent (it is replaced whole)
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        given = out  # the working folder is swapped out: a relative name would point into the old one
    _check_target(out, overwrite)  # before the work, and again under the lock
    out.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        _check_target(out, overwrite)  # another build may have written it meanwhile
        _write_folder(ds, out)
    return given


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --force to replace it)")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OURS) if out.is_dir() else [out.name]
        if foreign:  # --force replaces a data set, never a folder of other things
            raise FileExistsError(
                f"{out} holds files that are not a data set's ({', '.join(foreign[:5])}); not replaced"
            )


@contextlib.contextmanager
def _build_lock(out: Path):
    """An exclusive lock on `out`'s parent folder (fcntl.flock on the folder itself: no lock file
    is left behind) held while a data set is written there: two builds to one folder take turns,
    and neither deletes the other's."""
    import fcntl

    fd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for the other build
        yield
    finally:
        os.close(fd)


def _write_folder(ds: Dataset, out: Path) -> None:
    """The data set written under a temporary name beside `out`, then swapped into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:200]}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a data set is as readable as any folder
    try:
        for name in SPLITS:
            _write_npz(tmp / f"{name}.npz", getattr(ds, name).arrays())
        manifest = {
            "format": FORMAT_VERSION,
            "gram_ppl_version": __version__,
            "task": ds.config.name,
            "size": ds.config.size,
            "seed": ds.config.seed,
            "config": to_dict(ds.config),
            "counts": {name: len(getattr(ds, name)) for name in SPLITS},
            "test_num_solutions": ds.test.num_solutions.tolist(),
            "files": {f"{name}.npz": _sha256_file(tmp / f"{name}.npz") for name in SPLITS},
            "arrays": fingerprint(ds)["arrays"],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        old = None
        if out.exists():  # a data set of ours (checked): moved aside, replaced, then removed
            old = Path(tempfile.mkdtemp(prefix=f".{out.name[:200]}.old.", dir=out.parent))
            os.replace(out, old / "set")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_dataset(folder: str | Path) -> Dataset:
    """Load a data set folder, verifying every checksum; DatasetError names the bad file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    splits = {}
    for name in SPLITS:
        path = folder / f"{name}.npz"
        if not path.is_file():
            raise DatasetError(f"{path}: missing")
        if _sha256_file(path) != manifest["files"].get(path.name):
            raise DatasetError(f"{path}: checksum mismatch (the file was modified or truncated)")
        try:
            with zipfile.ZipFile(path) as zf:
                arrays = {k: _read_member(zf, k, manifest["arrays"].get(f"{name}/{k}")) for k in ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{path}: unreadable ({e})") from None
        for k, v in arrays.items():
            if _array_record(v) != manifest["arrays"].get(f"{name}/{k}"):
                raise DatasetError(f"{path}: array {k!r} does not match the manifest")
        splits[name] = Split(**arrays)
    cfg = from_dict(TaskConfig, manifest["config"])
    return Dataset(cfg, splits["train"], splits["test"])


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (is {folder} a data set folder made by `gram data build`?)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise DatasetError(f"{path}: unknown data set format (expected format {FORMAT_VERSION})")
    for key in ("config", "files", "arrays"):
        if not isinstance(manifest.get(key), dict):
            raise DatasetError(f"{path}: missing {key!r}")
    return manifest


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez-compatible, but with fixed timestamps so the bytes depend on the data alone."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(value), allow_pickle=False)


def _read_member(zf: zipfile.ZipFile, key: str, record) -> np.ndarray:
    """Array `key` of an open npz file, its .npy header checked against the manifest's record
    (dtype, shape) and against the member's stored size before anything is allocated: a header
    that claims more than the file holds is refused, never read."""
    info = zf.getinfo(f"{key}.npy")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if not isinstance(record, dict) or [dtype.str, list(shape)] != [record.get("dtype"), record.get("shape")]:
            raise ValueError(f"array {key!r}: header {dtype.str} {list(shape)} does not match the manifest")
        if dtype.hasobject or int(np.prod(shape, dtype=object)) * dtype.itemsize > info.file_size:
            raise ValueError(f"array {key!r}: header claims more data than the file holds")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _array_record(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
