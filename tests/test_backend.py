"""One interface for both backends (inference/backend.py): chosen by get_backend, each storing
its weights with its own serialiser, the NumPyro path importing no torch or Pyro."""

import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from tiny import tiny_config

from gram_ppl.inference.backend import get_backend
from gram_ppl.inference.run import fit, load_run
from gram_ppl.inference.runfolder import read_checkpoint

QUIET = dict(progress=False, eval_puzzles=4)
INTERFACE = ("setup", "make_trainer", "sampling_net", "weights", "net_from_weights", "prior_steps", "sample",
             "log_likelihood")  # fmt: skip
TRAINER = ("train_batch", "state", "load_state", "set_weights", "sampling_net", "apply_hyperparameters",
           "set_lr_scale")  # fmt: skip


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_each_backend_offers_the_one_interface(name):
    backend = get_backend(name)
    assert all(callable(getattr(backend, f)) for f in INTERFACE), name
    assert all(callable(getattr(backend.Trainer, f)) for f in TRAINER), name  # built and used by the fits below


def test_an_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("tensorflow")


@pytest.mark.parametrize("name, member", [("pyro", "trainer.pt"), ("numpyro", "trainer.msgpack")])
def test_each_backend_stores_its_weights_with_its_own_serialiser(tmp_path, name, member):
    run = tmp_path / "run"
    fit(dataclasses.replace(tiny_config(), backend=name), run, steps=2, **QUIET)
    with zipfile.ZipFile(run / "checkpoint.pt") as z:
        assert sorted(z.namelist()) == sorted(["checkpoint.json", member, "perm.npy"])
        meta = json.loads(z.read("checkpoint.json"))
        data = z.read(member)
    assert meta["format"] == 3 and meta["backend"] == name and meta["loop"]["step"] == 2
    if name == "pyro":
        import torch

        assert set(torch.load(io.BytesIO(data), weights_only=True)) == {"net", "ema", "opt", "torch_rng"}
    else:
        from flax import serialization

        assert set(serialization.msgpack_restore(data)) == {"params", "opt", "ema", "key"}


def test_a_tampered_member_is_refused(tmp_path):
    from gram_ppl.inference.runfolder import RunError

    run = tmp_path / "run"
    fit(tiny_config(), run, steps=1, **QUIET)
    with zipfile.ZipFile(run / "checkpoint.pt") as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["perm.npy"] = members["perm.npy"][:-8] + b"\x00" * 8
    with zipfile.ZipFile(run / "checkpoint.pt", "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    with pytest.raises(RunError, match="checksum mismatch"):
        load_run(run)


def test_format_2_run_folders_still_load_and_resume(tmp_path):
    """A checkpoint as the code of 2026-11 wrote it (one torch.save file, state + history +
    config inside a hashed payload) loads, samples the same boards, and resumes into format 3."""
    import torch

    from gram_ppl.config import to_dict
    from gram_ppl.inference.runfolder import sha256

    run = tmp_path / "run"
    fit(tiny_config(), run, steps=2, **QUIET)
    ckpt = read_checkpoint(run)
    before = load_run(run)
    state = torch.load(io.BytesIO(ckpt.trainer), weights_only=True)
    state.update(data_rng=json.dumps(ckpt.loop["data_rng"]), perm=torch.as_tensor(ckpt.perm),
                 cursor=ckpt.loop["cursor"], step=ckpt.loop["step"], elapsed=ckpt.loop["elapsed"],
                 history=json.dumps(ckpt.history), config=json.dumps(to_dict(ckpt.config)))  # fmt: skip
    inner = io.BytesIO()
    torch.save(state, inner)
    payload = inner.getvalue()
    outer = {"format": 2, "sha256": sha256(payload), "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    torch.save(outer, run / "checkpoint.pt")
    old = read_checkpoint(run)
    assert old.backend == "pyro" and old.loop["step"] == 2 and old.history == ckpt.history
    np.testing.assert_array_equal(old.perm, ckpt.perm)
    x = before.data.test.x[:3]
    sampler = get_backend("pyro")
    a = sampler.sample(before.mod, before.net, before.config, x, num_samples=4, seed=1)
    after = load_run(run)
    np.testing.assert_array_equal(a, sampler.sample(after.mod, after.net, after.config, x, num_samples=4, seed=1))
    resumed = fit(tiny_config(), run, steps=3, resume=True, **QUIET)
    assert [h["step"] for h in resumed.history if "loss" in h] == [1, 2, 3]
    assert zipfile.ZipFile(run / "checkpoint.pt").namelist()[0] == "checkpoint.json"  # rewritten as format 3


NO_TORCH = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "pyro"):
                raise ImportError(f"{name} imported on the NumPyro path")

    sys.meta_path.insert(0, Refuse())
    from gram_ppl.cli import main

    run, puzzles = sys.argv[1], sys.argv[2]
    base = ["--set", "fit.batch_size=8", "--set", "net.dim=16", "--set", "net.heads=2", "--set", "fit.n_sup=1",
            "--set", "fit.K=1", "--set", "net.layers=1", "--quiet"]  # one small program to compile
    assert main(["fit", "--backend", "numpyro", "--task", "nqueens", "--size", "5", "--steps", "2", *base,
                 "--out", run]) == 0
    assert main(["fit", "--task", "nqueens", "--size", "5", "--steps", "3", "--resume", "--quiet", "--out", run]) == 0
    assert main(["evaluate", run, "--num-samples", "2", "--puzzles", "3", "--out", run + "/eval.json"]) == 0
    assert main(["sample", run, "--puzzles", puzzles, "--num-samples", "2", "--out", run + "/s.jsonl"]) == 0
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pyro"))
    assert not leaked, leaked
    print("ok")
    """
)


def test_the_numpyro_path_imports_no_torch(tmp_path):
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("." * 25 + "\n")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "run"), str(puzzles)], env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["puzzles"] == 3
    assert len((tmp_path / "run" / "s.jsonl").read_text().splitlines()) == 1


def test_iw_bound_is_the_log_mean_likelihood():
    from gram_ppl.inference.evaluate import iw_bound

    ll = np.log(np.array([[0.5, 0.1], [0.25, 0.1]]))  # (K=2, B=2)
    np.testing.assert_allclose(iw_bound(ll), np.log([0.375, 0.1]))
    assert np.isfinite(iw_bound(np.full((4, 1), -1e4))).all()  # no underflow


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_every_evaluation_records_the_heldout_bound(tmp_path, name):
    result = fit(dataclasses.replace(tiny_config(), backend=name), tmp_path / "run", steps=1, **QUIET)
    record = next(r["eval"] for r in result.history if "eval" in r)
    assert record["heldout_log_p"] < 0 and np.isfinite(record["heldout_log_p"])
    backend = get_backend(name)
    run = load_run(tmp_path / "run")
    x, y = run.data.test.x[:3], run.data.test.y[:3]
    ll = backend.log_likelihood(run.mod, run.net, run.config, x, y, num_samples=5, seed=1)
    assert ll.shape == (5, 3) and (ll < 0).all()
    np.testing.assert_array_equal(ll, backend.log_likelihood(run.mod, run.net, run.config, x, y, num_samples=5, seed=1))


def test_compare_elpd_ranks_runs_with_standard_errors_of_the_differences(tmp_path, capsys):
    from gram_ppl.cli import main
    from gram_ppl.inference.evaluate import elpd_table, heldout_elpd

    for seed in (0, 1):
        fit(tiny_config(seed=seed), tmp_path / f"r{seed}", steps=1, **QUIET)
    a, b = (heldout_elpd(tmp_path / f"r{s}", 4, puzzles=5) for s in (0, 1))
    assert a.shape == b.shape == (5,) and (a < 0).all()
    assert main(["compare", str(tmp_path / "r0"), str(tmp_path / "r1"), "--num-samples", "2", "--puzzles", "5",
                 "--elpd", "4"]) == 0  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2 and rows[0].split("|")[6].strip() == "0.0"  # the best run's difference to itself
    assert "seed spread unknown" in rows[0]
    dse = float(rows[1].split("|")[7])
    assert np.isclose(dse, np.sqrt(5 * np.var(a - b, ddof=1)), atol=0.06)
    with pytest.raises(ValueError, match="different numbers of puzzles"):
        elpd_table({"a": a, "b": b[:3]}, 4)
    arm = f"both={tmp_path / 'r0'},{tmp_path / 'r1'}"
    assert main(["compare", "--arm", arm, "--num-samples", "2", "--puzzles", "5"]) == 0
    assert "| both | gram | 2 |" in capsys.readouterr().out
    assert main(["compare", "--arm", "nameless", "--num-samples", "2"]) == 2
    assert "expected NAME=RUN" in capsys.readouterr().err


def test_elpd_standard_errors_include_the_seed_spread():
    from gram_ppl.inference.evaluate import elpd_table

    rng = np.random.default_rng(0)
    base = rng.normal(-5, 1, 40)  # (B,) puzzles
    arm_a = [base + rng.normal(0, 0.1, 40) + shift for shift in (0.0, 0.5)]  # two seeds, totals 20 apart
    arm_b = [base - 0.2 + rng.normal(0, 0.1, 40) for _ in range(2)]
    rows = {r.split("|")[2].strip(): r.split("|") for r in elpd_table({"a": arm_a, "b": arm_b}, 8).splitlines()
            if r.startswith("| 0 ") or r.startswith("| 1 ")}  # fmt: skip
    ea, eb = np.mean(arm_a, 0), np.mean(arm_b, 0)
    puzzles = 40 * np.var(ea - eb, ddof=1)
    seeds = np.var([r.sum() for r in arm_a], ddof=1) / 2 + np.var([r.sum() for r in arm_b], ddof=1) / 2
    assert float(rows["b"][7]) == pytest.approx(np.sqrt(puzzles + seeds), abs=0.06)
    assert float(rows["b"][7]) > 5 * np.sqrt(puzzles)  # here the seeds dominate: without them the dse misleads
    assert rows["a"][3].strip() == "2" and float(rows["a"][4]) == pytest.approx(ea.sum(), abs=0.06)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_the_loss_terms_are_reported_by_name_in_both_backends(name):
    """Each backend's loss is the sum of its named, weighted terms; StepInfo and the history
    carry them under their names (a new term is one more entry, logged without more code)."""
    from gram_ppl import build_dataset
    from gram_ppl.config import with_priors
    from gram_ppl.models import get_model

    mod = get_model(name)
    cfg = with_priors(dataclasses.replace(tiny_config(), backend=name), mod.PRIORS)  # the programs other tests compile
    data = build_dataset(cfg.task)
    trainer = get_backend(name).make_trainer(mod, cfg, data.task)
    info = trainer.train_batch(data.train.x[:8], data.train.y[:8], data.train.num_solutions[:8])
    assert set(info.terms) == {"nll", "kl", "kl_cap", "halt", "value"}
    assert sum(info.terms.values()) == pytest.approx(info.loss, rel=1e-5)  # the loss is their sum
    assert info.terms["kl"] == pytest.approx(cfg.fit.beta * sum(info.kl) / cfg.fit.n_sup, rel=1e-4)
    assert json.loads(json.dumps(info._asdict()))["terms"] == info.terms  # recorded as it is
