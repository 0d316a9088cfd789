"""torchrun data-parallel training of the Pyro backend (inference/parallel.py): the rank layout,
the checks, 2 gloo ranks against one process on the full batch, and a killed 2-rank run resumed."""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gram_ppl.config import ConfigError, FitConfig, GramConfig, TaskConfig
from gram_ppl.inference.parallel import Parallel, check, from_env

ARGS = ["--task", "nqueens", "--size", "5", "--set", "net.dim=16", "--set", "net.layers=1",
        "--set", "fit.batch_size=8", "--eval-minutes", "100", "--quiet"]  # fmt: skip


def _gram(*args, ranks=1, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if ranks == 1:
        cmd = [sys.executable, "-m", "gram_ppl", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               str(Path(__file__).with_name("rank_entry.py")), *args]  # fmt: skip
    return cmd, env


def _run(*args, ranks=1):
    cmd, env = _gram(*args, ranks=ranks)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc: torchrun starts its workers in their own sessions)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        out += children
        frontier = children
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_rank_layout_and_shards():
    assert from_env({}) == Parallel(0, 1, 0) and Parallel().main
    par = from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert par == Parallel(1, 2, 1) and not par.main
    x, y = np.arange(8), np.arange(8) * 10
    assert [a.tolist() for a in par.shard(x, y)] == [[4, 5, 6, 7], [40, 50, 60, 70]]
    for bad in ({"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "two"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(ConfigError):
            from_env(bad)


def test_what_data_parallel_refuses():
    two = Parallel(0, 2, 0)
    check(GramConfig(backend="numpyro"), Parallel())  # one process: anything goes
    with pytest.raises(ConfigError, match="pyro backend"):
        check(GramConfig(backend="numpyro"), two)
    with pytest.raises(ConfigError, match="divisible"):
        check(GramConfig(fit=FitConfig(batch_size=7)), two)
    with pytest.raises(ConfigError, match="single-process"):
        check(GramConfig(fit=FitConfig(prior_path_weight=1.0)), two)
    generation = GramConfig(task=TaskConfig(name="sudoku", size=4))  # the term is on there by default
    with pytest.raises(ConfigError, match="prior_path_weight=0"):
        check(generation, two)
    check(dataclasses.replace(generation, fit=FitConfig(prior_path_weight=0.0)), two)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_the_full_batch(tmp_path):
    """Same seeds, same data order: each rank trains on half of every batch with the noise one
    process would draw for it; gradients are averaged. Losses, KLs and weights agree to float32."""
    import gram_ppl as gp

    decay = ("--set", "fit.lr_decay=1")  # the schedule's progress is agreed over the ranks (an all-reduce)
    _run("fit", *ARGS, *decay, "--steps", "3", "--out", str(tmp_path / "one"))
    r = _run("fit", *ARGS, *decay, "--steps", "3", "--out", str(tmp_path / "two"), ranks=2)
    assert r.stdout.count("3 batches") == 1  # rank 0 alone reports
    assert r.stderr.count("process group left: True") == 2  # both ranks, before the interpreter's teardown
    from gram_ppl.inference.runfolder import read_checkpoint

    one, two = (gp.load_run(tmp_path / n) for n in ("one", "two"))
    h1, h2 = (read_checkpoint(tmp_path / n).history for n in ("one", "two"))
    train = [(a, b) for a, b in zip(h1, h2, strict=True) if "loss" in a]
    assert len(train) == 3
    assert [b["lr"] for _, b in train] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])  # fit.lr = 1e-3 falling
    for a, b in train:
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and np.allclose(a["kl"], b["kl"], rtol=1e-4, atol=1e-6)
    assert any(sum(a["kl"]) > 0 for a, _ in train)  # the noise (and so its sharding) mattered
    wa, wb = one.net.state_dict(), two.net.state_dict()
    for k in wa:
        np.testing.assert_allclose(wb[k].numpy(), wa[k].numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_from_its_checkpoint(tmp_path):
    from gram_ppl.inference.runfolder import read_checkpoint

    out = tmp_path / "run"
    cmd, env = _gram("fit", *ARGS, "--steps", "100000", "--checkpoint-minutes", "0.01", "--out", str(out), ranks=2)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ranks = []
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists() or read_checkpoint(out).loop["step"] < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint from the 2-rank run"
            time.sleep(0.5)
        ranks = _descendants(proc.pid)
    finally:
        for pid in [*_descendants(proc.pid), proc.pid]:  # both ranks and torchrun, no chance to save
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        while any(_alive(pid) for pid in ranks):
            time.sleep(0.1)
    done = read_checkpoint(out).loop["step"]
    _run("fit", *ARGS, "--resume", "--steps", str(done + 2), "--out", str(out), ranks=2)
    ckpt = read_checkpoint(out)
    steps = [r["step"] for r in ckpt.history if "loss" in r]
    assert ckpt.loop["step"] == done + 2 and steps == list(range(1, done + 3))


JAX_STEPS = """
import json, jax, numpy as np
from gram_ppl import build_dataset
from gram_ppl.config import FitConfig, GramConfig, NetConfig, TaskConfig, with_priors
from gram_ppl.inference import svi_numpyro
from gram_ppl.models import get_model

mod = get_model("numpyro")
cfg = with_priors(GramConfig(task=TaskConfig(name="nqueens", size=5), net=NetConfig(dim=16, heads=2, layers=1),
                             fit=FitConfig(K=1, T=1, n_sup=1, batch_size=8), backend="numpyro"), mod.PRIORS)
data = build_dataset(cfg.task)
trainer = svi_numpyro.make_trainer(mod, cfg, data.task)
out = {"devices": len(jax.devices()), "sharded": trainer.shardings is not None, "steps": []}
for i in range(3):
    s = slice(8 * i, 8 * i + 8)
    info = trainer.train_batch(data.train.x[s], data.train.y[s], data.train.num_solutions[s])
    out["steps"].append([info.loss, *info.kl])
out["params"] = [float(np.abs(np.asarray(p)).sum()) for p in jax.tree_util.tree_leaves(trainer.params)]
# sampling: the N*B trajectories split over the devices (row_sharding), the same draws
bound, x = trainer.sampling_net(), data.test.x[:4]
out["rows_sharded"] = svi_numpyro.row_sharding(6 * 4) is not None
out["samples"] = svi_numpyro.sample(mod, bound, cfg, x, num_samples=6, depth=2, seed=3).tolist()
steps = svi_numpyro.prior_steps(mod, bound, cfg, x, 6, seed=4)
out["rollout"] = [next(steps)[0].tolist() for _ in range(2)]
out["log_lik"] = svi_numpyro.log_likelihood(mod, bound, cfg, x, data.test.y[:4], num_samples=6, seed=5).tolist()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_jax_data_parallel_over_two_host_devices_matches_one_device():
    """NumPyro: the batch sharded over 2 forced host devices (Mesh / NamedSharding, parameters
    replicated) gives the one-device losses, KLs and parameters to float32 rounding; sampled
    trajectories split over the devices give the one-device samples."""

    def start(devices: int) -> subprocess.Popen:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        return subprocess.Popen([sys.executable, "-c", JAX_STEPS], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def result(p: subprocess.Popen) -> dict:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    both = [start(1), start(2)]  # side by side: the two compile at once on two cores
    try:
        one, two = result(both[0]), result(both[1])
    finally:
        for p in both:
            if p.poll() is None:  # never left running after a failure
                p.kill()
                p.wait()
    assert (one["devices"], one["sharded"], two["devices"], two["sharded"]) == (1, False, 2, True)
    np.testing.assert_allclose(two["steps"], one["steps"], rtol=1e-5, atol=1e-6)
    assert any(step[1] > 0 for step in one["steps"])  # the noise (and so its sharding) mattered
    np.testing.assert_allclose(two["params"], one["params"], rtol=1e-5)
    # sampled trajectories sharded over the 2 devices: the same boards and log-likelihoods
    assert (one["rows_sharded"], two["rows_sharded"]) == (False, True)
    for key in ("samples", "rollout"):
        a, b = np.asarray(one[key]), np.asarray(two[key])
        assert a.shape == b.shape and (a == b).mean() > 0.99, key  # argmax boards: equal up to float ties
    np.testing.assert_allclose(two["log_lik"], one["log_lik"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("world", "finalised"), [("2", False), ("1", True), (None, True)])
def test_a_worker_exits_without_interpreter_finalisation(world, finalised):
    # a torchrun worker of a multi-process run leaves with os._exit after flushing (gloo's threads
    # can abort a rank during finalisation); one process exits normally, atexit handlers and all
    code = ("import atexit, sys; from gram_ppl.cli import exit_process; "
            "atexit.register(lambda: print('finalised', file=sys.stderr)); "
            "print('written', end=''); print('to stderr', end='', file=sys.stderr); exit_process(3)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"} | ({"WORLD_SIZE": world} if world else {})
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and r.stdout == "written"  # the code and the buffered output survive
    assert r.stderr.startswith("to stderr") and ("finalised" in r.stderr) == finalised
