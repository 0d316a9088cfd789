"""The hostile-input audit of issue 28 (part 2), one test per reproduced failure: links and
non-files where the writer lock goes, writers that race, inputs that would exhaust memory or
loop forever, tampered checkpoints and data sets, folders left by a kill, read-only caches.
Each answer is a one-line error (exit 2 from the CLI) or a run that goes on; nothing outside the
tool's own files is touched."""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from tiny import tiny_config

from gram_ppl.config import ConfigError, NetConfig, TaskConfig
from gram_ppl.data import DatasetError, build_dataset, load_dataset, save_dataset
from gram_ppl.inference import resources
from gram_ppl.inference.loading import convert_run
from gram_ppl.inference.run import RunError, fit, load_run
from gram_ppl.inference.runfolder import read_checkpoint, sha256, writer_lock
from gram_ppl.tasks import PuzzleError, get_task

QUIET = dict(progress=False, eval_puzzles=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("hostile") / "run"
    fit(tiny_config(), run, steps=2, **QUIET)
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _gram(*args):
    return subprocess.run([sys.executable, "-m", "gram_ppl", *args], capture_output=True, text=True, timeout=300)


def _puzzle_file(tmp_path):
    task = get_task("nqueens", 5)
    path = tmp_path / "puzzles.txt"
    path.write_text(task.format_puzzle(build_dataset(TaskConfig(name="nqueens", size=5)).test.x[0]) + "\n")
    return str(path)


def _one_line_error(r):
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 2 and last.startswith("gram: error:") and "Traceback" not in r.stderr, r.stderr


def _rewrite_checkpoint(run, meta_change=None, members=None):
    """checkpoint.pt with changed members or checkpoint.json fields, every hash recomputed."""
    path = run / "checkpoint.pt"
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("checkpoint.json"))
        data = {n: z.read(n) for n in meta["sha256"]}
    data.update(members or {})
    meta["sha256"] = {n: sha256(v) for n, v in data.items()}
    if meta_change:
        meta_change(meta)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("checkpoint.json", json.dumps(meta))
        for n, v in data.items():
            z.writestr(n, v)
    path.write_bytes(out.getvalue())


# ---- the writer lock ------------------------------------------------------------------------
def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(run, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    with pytest.raises(RunError, match="symbolic link"):
        fit(tiny_config(), run, steps=3, resume=True, **QUIET)
    assert victim.read_text() == "precious\n"
    r = _gram("fit", "--task", "nqueens", "--size", "5", "--out", str(run), "--resume", "--steps", "3")
    _one_line_error(r)
    assert victim.read_text() == "precious\n"


def test_a_lock_that_is_not_a_regular_file_is_refused(run):
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")
    with pytest.raises(RunError, match="not a regular file"):
        with writer_lock(run):
            pass


def test_convert_into_a_run_being_trained_is_refused(run, tmp_path):
    target = tmp_path / "target"
    fit(tiny_config(), target, steps=1, **QUIET)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    with writer_lock(target):  # a fit is training there
        with pytest.raises(RunError, match="in use by another writer"):
            convert_run(run, target, "numpyro", force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before


def test_convert_refuses_before_touching_an_existing_folder(run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine\n")
    with pytest.raises(RunError, match="not empty"):
        convert_run(run, tmp_path / "busy", "numpyro")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


# ---- tampered checkpoints and configs --------------------------------------------------------
def test_a_malicious_pickle_inside_the_checkpoint_is_one_line_exit_2(run, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    _rewrite_checkpoint(run, members={"trainer.pt": pickle.dumps(Evil())})
    with pytest.raises(RunError, match="cannot be loaded"):
        load_run(run)
    sample = ["sample", str(run), "--puzzles", _puzzle_file(tmp_path), "--out", "-"]
    for args in (sample, ["evaluate", str(run), "--num-samples", "1"]):
        _one_line_error(_gram(*args))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["loop"].update(step="7"), "loop.step"),
        (lambda m: m.update(format=99), "format 99"),
        (lambda m: m.update(history="none"), "history"),
    ],
    ids=["step-a-string", "format-99", "history-not-a-list"],
)
def test_checkpoint_json_fields_of_the_wrong_kind_are_refused(run, change, message):
    _rewrite_checkpoint(run, meta_change=change)
    with pytest.raises(RunError, match=message):
        read_checkpoint(run)
    _one_line_error(_gram("fit", "--task", "nqueens", "--size", "5", "--out", str(run), "--resume", "--steps", "3"))


def test_a_config_that_is_a_json_list_is_refused(run):
    (run / "config.json").write_text("[1, 2]\n")
    with pytest.raises(RunError, match="JSON object"):
        load_run(run)
    _one_line_error(_gram("evaluate", str(run)))


# ---- folders left by a kill ------------------------------------------------------------------
def test_a_start_killed_before_its_first_checkpoint_is_restarted_by_the_same_command(run, tmp_path):
    early = tmp_path / "early"
    early.mkdir()
    for name in ("config.json", "model.py", ".lock", ".config.json.123.tmp"):
        shutil.copy(run / name, early / name) if (run / name).exists() else (early / name).write_text("")
    result = fit(tiny_config(), early, steps=1, **QUIET)  # no --force needed: it held nothing to lose
    assert [h["step"] for h in result.history if "loss" in h] == [1]
    with pytest.raises(RunError, match="not empty"):  # with a checkpoint, work would be lost: refused
        fit(tiny_config(), early, steps=1, **QUIET)


def test_a_forced_resume_killed_before_its_first_checkpoint_leaves_a_plain_resume_possible(run, monkeypatch):
    from gram_ppl.inference import run as run_module

    changed = tiny_config(lr=5e-4)

    def killed(self, *a, **k):
        raise KeyboardInterrupt("killed before the first checkpoint")

    with monkeypatch.context() as m:
        m.setattr(run_module.TrainLoop, "run", killed)
        with pytest.raises(KeyboardInterrupt):
            fit(changed, run, steps=4, resume=True, force=True, **QUIET)
    assert json.loads((run / "config.json").read_text())["fit"]["lr"] == 1e-3  # recorded only with a checkpoint
    fit(tiny_config(), run, steps=3, resume=True, **QUIET)  # the plain resume is not taken for a hand edit
    forced = fit(changed, run, steps=4, resume=True, force=True, **QUIET)
    assert forced.config.fit.lr == 5e-4 and json.loads((run / "config.json").read_text())["fit"]["lr"] == 5e-4


# ---- memory, depth and threads -------------------------------------------------------------
def test_threads_above_the_cores_and_absurd_depths_are_refused(tmp_path, trained):
    with pytest.raises(RunError, match="cores"):
        fit(tiny_config(threads=1000), tmp_path / "r", steps=1, **QUIET)
    r = _gram("sample", str(trained), "--puzzles", _puzzle_file(tmp_path), "--depth", "100000", "--out", "-")
    assert r.returncode == 2 and "depth must be" in r.stderr


def test_large_sampling_calls_run_in_chunks_that_fit(trained, monkeypatch):
    from gram_ppl.inference.sampling import rollout

    run = load_run(trained)
    x = run.data.test.x[:3]
    whole = rollout(run.mod, run.net, run.config, x, 12, 2, seed=5)
    monkeypatch.setattr(resources, "machine_bytes", lambda: 40 * resources.sample_bytes(run.config, run.task, 3))
    chunks = resources.sample_chunks(run.config, run.task, 12, 3)
    assert len(chunks) > 1 and sum(chunks) == 12
    parts = rollout(run.mod, run.net, run.config, x, 12, 2, seed=5)
    assert parts.boards.shape == whole.boards.shape and parts.per_step.shape == whole.per_step.shape
    n0 = chunks[0]  # the first chunk draws exactly what the unchunked call drew for its samples
    np.testing.assert_array_equal(parts.boards[:n0], rollout(run.mod, run.net, run.config, x, n0, 2, seed=5).boards)


def test_keeping_every_step_of_too_many_trajectories_is_refused_before_allocating(trained):
    from gram_ppl.inference.trajectories import collect

    run = load_run(trained)
    need = resources.trajectory_bytes(run.config, run.task, 10**9, 4)
    assert need > resources.machine_bytes()
    with pytest.raises(RunError, match="fewer --num-samples"):
        collect(run.mod, run.net, run.config, run.task, run.data.test.x[:1], None, 10**9)


# ---- data sets -------------------------------------------------------------------------------
def test_data_build_dot_force_inside_a_data_set_replaces_it_in_place(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    save_dataset(build_dataset(TaskConfig(name="sudoku", size=4)), folder)
    monkeypatch.chdir(folder)
    from gram_ppl.cli import main

    assert main(["data", "build", "--task", "sudoku", "--size", "4", "--seed", "1", "--out", ".", "--force"]) == 0
    assert load_dataset(folder).config.seed == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_build_never_deletes_a_data_set_another_build_wrote_meanwhile(tmp_path, monkeypatch):
    from gram_ppl import data

    out = tmp_path / "d"
    theirs = build_dataset(TaskConfig(name="sudoku", size=4, seed=2))
    real_lock = data._build_lock

    def lock_after_the_other_build(folder):
        data._write_folder(theirs, folder)  # the other build finishes while this one waits for the lock
        return real_lock(folder)

    monkeypatch.setattr(data, "_build_lock", lock_after_the_other_build)
    with pytest.raises(FileExistsError, match="not empty"):
        save_dataset(build_dataset(TaskConfig(name="sudoku", size=4)), out)
    assert load_dataset(out).config.seed == 2  # theirs, whole and verified


def test_more_graphs_than_exist_are_refused_instead_of_searched_for_forever():
    assert get_task("coloring", 5).colourable_graphs() == 958
    with pytest.raises(ConfigError, match="only 958 distinct"):
        build_dataset(TaskConfig(name="coloring", size=5))
    r = _gram("data", "build", "--task", "coloring", "--size", "5", "--out", "/nonexistent/never")
    _one_line_error(r)


def test_a_npy_header_claiming_more_than_the_file_holds_is_refused_before_reading(tmp_path):
    folder = save_dataset(build_dataset(TaskConfig(name="sudoku", size=4)), tmp_path / "d")
    path = folder / "test.npz"
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**11,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["x.npy"] = buf.getvalue() + members["x.npy"][128:]
    with zipfile.ZipFile(path, "w") as z:
        for n, v in members.items():
            z.writestr(n, v)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["test.npz"] = sha256(path.read_bytes())  # the file hash recomputed: only the header lies
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="does not match the manifest"):
        load_dataset(folder)
    manifest["arrays"]["test/x"]["shape"] = [10**11]  # and the manifest lies with it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="more data than the file holds"):
        load_dataset(folder)


def test_a_250_character_output_name_is_written(tmp_path):
    out = tmp_path / ("d" * 250)
    save_dataset(build_dataset(TaskConfig(name="sudoku", size=4)), out)
    from gram_ppl.fileio import atomic_write

    atomic_write(tmp_path / ("f" * 250), "ok\n")
    assert load_dataset(out).config.size == 4 and (tmp_path / ("f" * 250)).read_text() == "ok\n"


# ---- user files and the environment -----------------------------------------------------------
def test_an_endless_puzzle_stream_is_read_in_bounded_memory():
    from gram_ppl.puzzle_io import read_puzzles

    with pytest.raises(PuzzleError, match="longer than"):
        list(read_puzzles(get_task("sudoku", 4), "/dev/zero"))


def test_verify_with_no_puzzles_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n")
    r = _gram("verify", "--task", "sudoku", "--size", "4", "--puzzles", str(empty), "--solutions", str(empty))
    _one_line_error(r)
    assert "no puzzles" in r.stderr


def test_zero_layers_are_named_in_the_error():
    with pytest.raises(ConfigError, match="layers must be >= 1"):
        NetConfig(layers=0)


def test_arviz_imports_under_a_read_only_cache(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permissions: a path that cannot be created instead
        ro = tmp_path / "a-file"
        ro.write_text("")
    env = {**os.environ, "XDG_CACHE_HOME": str(ro), "MPLCONFIGDIR": str(tmp_path)}
    code = "from gram_ppl.diagnostics import import_arviz; print(import_arviz().__name__)"
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "arviz", r.stderr


def test_a_numpyro_parameter_of_the_wrong_shape_is_refused_and_convert_writes_nothing(run, tmp_path):
    from flax import serialization

    npr = convert_run(run, tmp_path / "np", "numpyro")
    with zipfile.ZipFile(npr / "checkpoint.pt") as z:
        raw = serialization.msgpack_restore(z.read("trainer.msgpack"))
    raw["params"]["decoder"]["kernel"] = np.zeros((3, 3), np.float32)  # tampered, hash recomputed below
    _rewrite_checkpoint(npr, members={"trainer.msgpack": serialization.msgpack_serialize(raw)})
    with pytest.raises(RunError, match="decoder"):
        load_run(npr)
    with pytest.raises(RunError, match="cannot be loaded"):
        convert_run(npr, tmp_path / "back", "pyro")
    assert not (tmp_path / "back").exists()
    _one_line_error(_gram("convert", str(npr), "--to", "pyro", "--out", str(tmp_path / "back2")))
    assert not (tmp_path / "back2").exists()


def test_an_edited_priors_file_is_caught_on_resume(run, monkeypatch):
    """models/priors.py is recorded in the run folder beside the model file; a resume after an
    edit of it is refused unless forced, like an edit of the model file."""
    from gram_ppl.inference import runfolder

    assert (run / "priors.py").read_text() == runfolder._priors_source()
    monkeypatch.setattr(runfolder, "_priors_source", lambda: "PRIORS = 'edited'\n")
    with pytest.raises(RunError, match="PRIORS file"):
        fit(tiny_config(), run, steps=3, resume=True, **QUIET)
    fit(tiny_config(), run, steps=3, resume=True, force=True, **QUIET)
    assert (run / "priors.py").read_text() == "PRIORS = 'edited'\n"  # recorded with the forced resume's checkpoint
