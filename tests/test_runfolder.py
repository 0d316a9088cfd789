"""Run folders that never lose or misstate work (docs/formats.md): one atomic commit of checkpoint,
history and config, a crash at any write leaves a loadable run, an exclusive writer lock, config
edits detected on resume and forced changes applied, Ctrl-C saves, bad values refused."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from tiny import tiny_config

from gram_ppl.config import ConfigError, FitConfig
from gram_ppl.inference.run import RunError, fit, load_config, load_run
from gram_ppl.inference.runfolder import atomic_write, read_checkpoint, read_history, writer_lock

QUIET = dict(progress=False, eval_puzzles=4)

CRASH = textwrap.dedent(
    """
    import os, sys
    from tiny import tiny_config
    from gram_ppl.inference import runfolder
    from gram_ppl.inference.run import fit
    calls, kill_at = [0], int(sys.argv[2])
    real_replace = os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == kill_at:
            os._exit(9)  # as SIGKILL: no cleanup, no flush
        real_replace(a, b)
    runfolder.os.replace = replace
    fit(tiny_config(), sys.argv[1], steps=4, resume=True, progress=False, eval_puzzles=4)
    """
)


@pytest.mark.parametrize("kill_at", [1, 2])  # 1: before the checkpoint's rename; 2: before history.json's
def test_a_kill_between_the_writes_leaves_a_consistent_loadable_run(tmp_path, kill_at):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=2, **QUIET)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    r = subprocess.run([sys.executable, "-c", CRASH, str(run), str(kill_at)], env=env, capture_output=True)
    assert r.returncode == 9, r.stderr.decode()
    ckpt = read_checkpoint(run)
    batches = [h for h in ckpt.history if "loss" in h]
    assert len(batches) == ckpt.loop["step"] == (2 if kill_at == 1 else 4)  # old or new, each whole
    assert read_history(run) == ckpt.history
    load_run(run)  # every command can use it
    resumed = fit(tiny_config(), run, steps=5, resume=True, **QUIET)
    assert [h["step"] for h in resumed.history if "loss" in h] == [1, 2, 3, 4, 5]
    assert not list(run.glob(".*.tmp"))  # the killed writer's temporary was cleaned by the next one


def test_a_second_writer_is_refused_and_readers_are_not(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    with writer_lock(run):
        with pytest.raises(RunError, match=rf"in use by another writer \(pid {os.getpid()}\)"):
            fit(tiny_config(), run, steps=2, resume=True, force=True, **QUIET)
        load_run(run)  # a reader during a write
    fit(tiny_config(), run, steps=2, resume=True, **QUIET)  # the lock is released


def test_a_hand_edited_config_is_detected_and_a_forced_change_is_applied(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"]["seed"] = 7
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match=r"config.json task.seed: 7, but the checkpoint was trained with 0"):
        fit(load_config(run), run, steps=2, resume=True, **QUIET)
    cfg["task"]["seed"] = 0
    (run / "config.json").write_text(json.dumps(cfg))
    result = fit(tiny_config(lr=0.05), run, steps=2, resume=True, force=True, **QUIET)
    assert {g["lr"] for g in result.trainer.opt.param_groups} == {0.05}  # not the restored 1e-3
    assert json.loads((run / "config.json").read_text())["fit"]["lr"] == 0.05
    assert read_checkpoint(run).config.fit.lr == 0.05  # the checkpoint says what it was trained with


def test_force_validates_before_touching_the_folder_and_keeps_foreign_files(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    (run / "notes.txt").write_text("mine")
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError, match="batch_size 100000 exceeds"):
        fit(tiny_config(batch_size=100000), run, steps=1, force=True, **QUIET)
    assert (run / "checkpoint.pt").read_bytes() == before
    fit(tiny_config(), run, steps=1, force=True, **QUIET)
    assert (run / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "bad", [{"beta": float("nan")}, {"lr": float("inf")}, {"batch_size": True}, {"beta": "abc"}, {"K": 2.5}]
)
def test_non_finite_and_wrongly_typed_values_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        FitConfig(**bad)


def _gram(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gram_ppl", *args], capture_output=True, text=True, **kw)


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    base = ["fit", "--task", "nqueens", "--size", "5", "--steps", "1", "--out", str(tmp_path / "r")]
    for sets in (["--set", "fit.beta=abc"], ["--set", "fit.beta=NaN"], ["--set", "net.expansion=-1"]):
        r = _gram(*base, *sets)
        assert r.returncode == 2 and r.stderr.startswith("gram: error:") and "Traceback" not in r.stderr, r.stderr
    run = tmp_path / "zero"
    fit(tiny_config(), run, steps=1, **QUIET)
    (run / "checkpoint.pt").write_bytes(b"")
    r = _gram("evaluate", str(run))
    assert r.returncode == 2 and "corrupted or truncated" in r.stderr and "Traceback" not in r.stderr


def test_a_malicious_pickle_is_refused_with_a_message(tmp_path):
    import pickle

    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (run / "checkpoint.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(RunError, match="corrupted or truncated checkpoint, or not one"):
        load_run(run)
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def ctrl_c_delivered():
    """Ctrl-C reaches Python even where the suite was started with SIGINT ignored (a background
    job of a shell without job control, e.g. `nohup make test &`: Python then installs no
    KeyboardInterrupt handler, and the tests below would wait for a signal nobody hears). A child
    started meanwhile hears it too: exec resets a handled signal to SIG_DFL (an ignored one would
    stay ignored), and Python installs its handler over SIG_DFL. No preexec_fn: that would make
    subprocess fork, which JAX (imported by other tests of the worker) warns against."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_130(tmp_path, sig, ctrl_c_delivered):
    run = tmp_path / "run"
    args = ["fit", "--task", "nqueens", "--size", "5", "--steps", "100000", "--quiet", "--out", str(run),
            "--set", "fit.batch_size=8", "--set", "net.dim=16", "--set", "net.heads=2", "--eval-minutes", "100",
            "--checkpoint-minutes", "0.0001"]  # fmt: skip
    p = subprocess.Popen([sys.executable, "-m", "gram_ppl", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:  # training has begun
        time.sleep(0.2)
    p.send_signal(sig)
    try:
        err = p.communicate(timeout=240)[1]  # generous: two busy cores can stall a save for a minute
    except subprocess.TimeoutExpired:
        p.kill()  # never leave it running (its warnings would fail the next test on this worker)
        pytest.fail(f"no exit within 240 s of the signal; stderr: {p.communicate()[1][-2000:]}")
    assert p.returncode == 130, err
    assert "checkpoint saved" in err
    ckpt = read_checkpoint(run)
    assert ckpt.loop["step"] >= 1 and len([h for h in ckpt.history if "loss" in h]) == ckpt.loop["step"]


def test_a_ctrl_c_during_a_checkpoint_write_lands_after_it(tmp_path, monkeypatch, ctrl_c_delivered):
    """The signal arrives in the middle of a write (here: before the real write starts); the write
    finishes, then the interrupt stops the loop, which saves once more and says so."""
    from gram_ppl.inference import run as run_module
    from gram_ppl.inference.run import Interrupted

    real, calls, finished = run_module.write_checkpoint, [], []

    def write_with_a_signal(folder, ckpt):
        calls.append(ckpt.loop["step"])
        if len(calls) == 2:  # the second batch's write: the interrupt lands inside it
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # where an undeferred KeyboardInterrupt would be raised
        real(folder, ckpt)
        finished.append(ckpt.loop["step"])

    monkeypatch.setattr(run_module, "write_checkpoint", write_with_a_signal)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        fit(tiny_config(), tmp_path / "run", steps=50, checkpoint_every_s=0.0, **QUIET)
    assert calls == [1, 2, 2] and finished == [1, 2, 2]  # the cut write finished, then the loop's own save
    assert read_checkpoint(tmp_path / "run").loop["step"] == 2


def test_outputs_write_through_symlinks_and_refuse_nothing_silently(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    from gram_ppl.cli import write_lines as _write_lines

    _write_lines(link, ["new"])
    assert link.is_symlink() and target.read_text() == "new\n"
    with pytest.raises(RunError, match="not a regular file"):
        atomic_write(link, "x")  # run-folder files are never written through a link
    if os.path.exists("/dev/full"):
        with pytest.raises(OSError):
            _write_lines(type(link)("/dev/full"), ["x"])  # a full device: an error, not exit 0


def test_sampling_a_run_loads_the_networks_only_not_the_data_set(tmp_path, monkeypatch):
    from gram_ppl.cli import main
    from gram_ppl.inference import loading as run_module

    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    puzzles = tmp_path / "p.txt"
    loaded = load_run(run)
    x = loaded.data.test.x[:2]
    puzzles.write_text("".join(loaded.task.format_puzzle(p) + "\n" for p in x))

    def no_data(*a, **k):
        raise AssertionError("the data set was rebuilt just to sample")

    monkeypatch.setattr(run_module, "build_dataset", no_data)
    out = tmp_path / "s.jsonl"
    assert main(["sample", str(run), "--puzzles", str(puzzles), "--num-samples", "2", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2


def test_sampling_warns_when_the_model_file_differs_from_the_runs(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    ok = _gram("evaluate", str(run), "--num-samples", "2", "--puzzles", "2")
    assert ok.returncode == 0 and "warning" not in ok.stderr
    saved = (run / "model.py").read_text()
    (run / "model.py").write_text(saved + "\n# a comment, and a docstring reworded\n")
    quiet = _gram("evaluate", str(run), "--num-samples", "2", "--puzzles", "2")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr  # the same code
    (run / "model.py").write_text(saved + "\nTRAINED_WITH = 'something else'\n")
    r = _gram("evaluate", str(run), "--num-samples", "2", "--puzzles", "2")
    assert r.returncode == 0 and "gram: warning:" in r.stderr and "differs from" in r.stderr


def test_model_files_are_compared_by_code_not_by_docstrings_or_comments():
    from gram_ppl.inference.runfolder import same_code

    base = '"""The story."""\n\ndef model(x):\n    """Draw."""\n    return x + 1  # one\n'
    assert same_code(base, base.replace("The story.", "Another story.").replace("# one", "# two"))
    assert same_code(
        base, base.replace('    """Draw."""\n', "").replace("    return x + 1  # one", "\n    return (x + 1)")
    )
    assert not same_code(base, base.replace("x + 1", "x + 2"))
    assert not same_code(base, base.replace("x + 1", "1 + x"))
    assert not same_code(base, base.replace("def model(x)", "def model(y)"))
    assert not same_code(base, base + "\nSCALE = 0.1\n")
    assert not same_code(
        base, base.replace('    """Draw."""\n', '    "Draw."\n    "Twice."\n')
    )  # a second string is code
    assert same_code("def (:", "def (:") and not same_code("def (:", "def  (:")  # unparsable: compared as text


def test_resource_checks_refuse_with_an_estimate(tmp_path):
    import numpy as np

    from gram_ppl.inference.sampling import rollout

    with pytest.raises(RunError, match=r"K 1000000000.*needs an estimated [\d,.]+ GiB; this machine has"):
        fit(tiny_config(K=1000000000), tmp_path / "k", steps=1, **QUIET)
    assert not (tmp_path / "k" / "config.json").exists()  # refused before anything was written
    r = _gram("fit", "--task", "nqueens", "--size", "8", "--steps", "1", "--out", str(tmp_path / "d"),
              "--set", "net.dim=1000000")  # fmt: skip
    assert r.returncode == 2 and "needs an estimated" in r.stderr
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    loaded = load_run(run)
    x = loaded.data.test.x[:1]
    with pytest.raises(RunError, match=r"sampling 100,000,000 trajectories .*needs an estimated"):
        rollout(loaded.mod, loaded.net, loaded.config, np.asarray(x), 100_000_000, 1)


def _sudoku_gen_config():
    import dataclasses

    from gram_ppl.config import TaskConfig

    return dataclasses.replace(tiny_config(), task=TaskConfig(name="sudoku", size=4))  # sizes left to the defaults


def test_a_run_keeps_its_data_set_when_the_defaults_change(tmp_path, monkeypatch):
    from gram_ppl.config import DEFAULT_COUNTS
    from gram_ppl.data import build_dataset, fingerprint

    run = tmp_path / "run"
    fit(_sudoku_gen_config(), run, steps=1, **QUIET)
    stored = json.loads((run / "config.json").read_text())["task"]
    assert (stored["mode"], stored["num_train"], stored["num_test"]) == ("generate", 230, 58)  # resolved
    trained = build_dataset(_sudoku_gen_config().task)
    assert json.loads((run / "data.json").read_text()) == fingerprint(trained)
    monkeypatch.setitem(DEFAULT_COUNTS, ("sudoku", "generate"), {4: (100, 20)})  # a later release's defaults
    assert len(build_dataset(_sudoku_gen_config().task).train) == 100
    loaded = load_run(run)
    assert fingerprint(loaded.data) == fingerprint(trained)  # no warning (warnings are errors here)
    resumed = fit(_sudoku_gen_config(), run, steps=2, resume=True, **QUIET)  # the request resolves as it did
    assert resumed.config.task.num_train == 230


def test_a_run_keeps_its_fit_rules_when_the_defaults_change(tmp_path, monkeypatch):
    """config.json writes out every rule left to its default (prior path, sample depth and
    temperature, keep_best, augmentation): a later default neither changes how the run samples
    nor refuses its resume; an override on resume moves the rules that derive from it."""
    from gram_ppl import config
    from gram_ppl.cli import build_parser
    from gram_ppl.cli.runs import fit_config

    run = tmp_path / "run"
    asked = _sudoku_gen_config()
    fit(asked, run, steps=1, **QUIET)
    stored = json.loads((run / "config.json").read_text())["fit"]
    assert json.loads((run / "config.json").read_text())["net"]["relation_bias"] is True  # Sudoku's default
    rules = {k: stored[k] for part, k in config.RULE_FIELDS if part == "fit"}
    assert rules == {"prior_path_weight": 1.0, "prior_path_target": "train", "prior_path_anchor": True,
                     "sample_depth": 4 * asked.fit.n_sup, "sample_temperature": 1.0, "sample_temperature_end": 1.0, "keep_best": True,
                     "augment": False}  # fmt: skip
    from gram_ppl.models.priors import PRIORS

    assert config.config_differences(config.with_priors(asked, PRIORS), load_config(run)) == []  # a default = its value
    monkeypatch.setitem(config.REPAIR_BY_DEFAULT, "sudoku", (4, 6, 9))  # a later release's defaults
    assert config.sample_depth(asked) == 16 * asked.fit.n_sup and config.prior_path(asked).target == "repair"
    cfg = load_config(run)
    assert (config.sample_depth(cfg), config.prior_path(cfg).target) == (4 * asked.fit.n_sup, "train")
    resumed = fit(asked, run, steps=2, resume=True, **QUIET)  # not refused: the stored rules fill the Nones
    assert resumed.config.fit.prior_path_target == "train"
    args = build_parser().parse_args(["fit", "--out", str(run), "--resume", "--set", "fit.n_sup=3"])
    moved = config.resolved(fit_config(args))  # sample_depth derives from n_sup; the target stays as trained
    assert (moved.fit.sample_depth, moved.fit.prior_path_target) == (12, "train")
    unchanged = config.resolved(fit_config(build_parser().parse_args(["fit", "--out", str(run), "--resume"])))
    assert unchanged == cfg


def test_a_changed_data_set_is_refused_on_resume_and_named_on_load(tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    record = json.loads((run / "data.json").read_text())
    record["arrays"]["train/x"]["sha256"] = "0" * 64  # as if the task's generator had changed since
    (run / "data.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match="data set built now differs(.|\n)*train/x"):
        fit(tiny_config(), run, steps=2, resume=True, **QUIET)
    with pytest.warns(UserWarning, match="differs from the one the run was trained on.*train/x"):
        assert len(load_run(run).data.train)
    fit(tiny_config(), run, steps=2, resume=True, force=True, **QUIET)  # forced: the new data is recorded
    assert json.loads((run / "data.json").read_text())["arrays"]["train/x"]["sha256"] != "0" * 64
    assert len(load_run(run).data.train)  # and agrees again: no warning
    (run / "data.json").write_text('{"config": {}}')  # no array records: the file is named, as a run error
    with pytest.raises(RunError, match=r"data\.json: cannot be read \('arrays'\)"):
        fit(tiny_config(), run, steps=3, resume=True, **QUIET)


def test_a_run_from_before_data_json_warns_that_its_sizes_are_todays(tmp_path):
    run = tmp_path / "run"
    fit(_sudoku_gen_config(), run, steps=1, **QUIET)
    cfg = json.loads((run / "config.json").read_text())
    cfg["task"].update(mode=None, num_train=None, num_test=None, clues=None, min_effort=None)  # the old format
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "data.json").unlink()
    with pytest.warns(UserWarning, match="records neither its data set nor its sizes.*num_train"):
        assert len(load_run(run).data.train)
    fit(_sudoku_gen_config(), run, steps=2, resume=True, **QUIET)  # resumes, and records what it continues on
    assert (run / "data.json").is_file()


def test_keep_best_samples_from_the_best_evaluation_and_keeps_it_across_resume(tmp_path, monkeypatch):
    import dataclasses

    import numpy as np

    from gram_ppl.inference import run as run_module
    from gram_ppl.inference import svi_pyro

    scores, seen = iter([0.1, 0.5, 0.2, 0.0, 0.5, 0.3, 0.9, 0.9, 1 / 128, 0.0, 0.9]), []  # of 128 blank draws

    def scripted(backend, trainer, task, test, puzzles, seed):  # the weights each evaluation saw, and a score
        seen.append({k: v.copy() for k, v in svi_pyro.weights(trainer.sampling_net()).items()})
        return {"prior_valid": 1.0, "prior_distinct_valid": next(scores)}  # validity alone would not tell

    monkeypatch.setattr(run_module, "held_out_validity", scripted)
    cfg = _sudoku_gen_config()
    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, keep_best=True))
    folder = tmp_path / "run"

    def same(net, w):
        return all(np.array_equal(v, w[k]) for k, v in svi_pyro.weights(net).items())

    result = fit(cfg, folder, steps=4, eval_every=1, progress=False)
    assert read_checkpoint(folder).loop["best"] == {"step": 2, "metric": "prior_distinct_valid", "value": 0.5}
    evals = [r for r in json.loads((folder / "history.json").read_text()) if "eval" in r]
    assert evals and all(r["eval_puzzles"] == 58 and r["prior_draws"] == 128 for r in evals)  # fit's eval_puzzles
    assert not same(result.trainer.sampling_net(), seen[1])  # trained on after the best evaluation
    assert same(result.net, seen[1]) and same(load_run(folder).net, seen[1])  # its weights are sampled from
    assert result.best == read_checkpoint(folder).loop["best"]  # what gp.evaluate reports as kept_best
    # resumed: the tie 0.5 at batch 5 takes the later weights, 0.3 at batch 6 keeps them
    fit(cfg, folder, steps=6, eval_every=1, progress=False, resume=True)
    assert read_checkpoint(folder).loop["best"] == {"step": 5, "metric": "prior_distinct_valid", "value": 0.5}
    assert same(load_run(folder).net, seen[4]) and not same(load_run(folder).net, seen[5])
    assert load_run(folder).best == {
        "step": 5,
        "metric": "prior_distinct_valid",
        "value": 0.5,
    }  # evaluate_run reports it as kept_best
    assert same(load_run(folder, latest=True).net, seen[5]) and load_run(folder, latest=True).best is None
    # gram convert carries the best weights: the NumPyro run samples from them too
    from gram_ppl.inference import svi_numpyro
    from gram_ppl.inference.run import convert_run

    moved = load_run(convert_run(folder, tmp_path / "moved", "numpyro"))
    assert all(np.allclose(v, seen[4][k]) for k, v in svi_numpyro.weights(moved.net).items())
    # without keep_best the same run folder samples from the latest weights
    plain = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, keep_best=False))
    assert read_checkpoint(fit(plain, tmp_path / "plain", steps=2, eval_every=1, progress=False).folder).best is None
    # one distinct valid board of 128 draws (a collapse onto one grid looks like that; the 4x4 test split
    # holds 58 grids, the blank input is drawn 128 times) is never kept: latest weights
    one = fit(cfg, tmp_path / "one", steps=2, eval_every=1, progress=False)
    assert read_checkpoint(one.folder).best is None and "best" not in read_checkpoint(one.folder).loop
    assert load_run(one.folder).best is None
    # a forced resume that turns keep_best off samples (and returns) the latest weights
    off = fit(plain, folder, steps=7, eval_every=1, progress=False, resume=True, force=True)
    assert off.best is None and same(off.net, seen[-1]) and load_run(folder).best is None


def test_keep_best_is_refused_where_the_evaluation_scores_held_out_inputs():
    import dataclasses

    from gram_ppl.config import TASK_NAMES, UNCHECKED, TaskConfig, gram_config_from_dict, keeps_best, to_dict
    from gram_ppl.tasks import TASKS

    with pytest.raises(ConfigError, match="keep_best"):
        tiny_config(keep_best=True)  # N-Queens: the evaluation's inputs are the test puzzles
    digits = dataclasses.replace(tiny_config(), task=TaskConfig(name="digits", size=8))
    with pytest.raises(ConfigError, match="keep_best"):  # no checker: every image is "valid"
        dataclasses.replace(digits, fit=dataclasses.replace(digits.fit, keep_best=True))
    assert not keeps_best(digits) and not keeps_best(tiny_config()) and keeps_best(_sudoku_gen_config())
    assert {n for n in TASK_NAMES if not TASKS[n].checker} == set(UNCHECKED)  # the list matches the tasks
    old = to_dict(_sudoku_gen_config())
    del old["fit"]["keep_best"]  # a run written before the field: it sampled from its latest weights
    assert not keeps_best(gram_config_from_dict(old))
    off = dataclasses.replace(_sudoku_gen_config().fit, keep_best=False)
    assert not keeps_best(dataclasses.replace(_sudoku_gen_config(), fit=off))
