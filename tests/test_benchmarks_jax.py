"""The benchmark scripts that compile JAX programs, smoke-tested (tiny sizes; see test_benchmarks.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_backends_benchmark(tmp_path):
    out = run("backends.py", "--quick", "--json", str(tmp_path / "b.json"))
    rows = json.loads((tmp_path / "b.json").read_text())
    assert "NumPyro traj-steps/s" in out and [r["N"] for r in rows["sampling"]] == [1, 4]
    assert rows["training"]["programs"] == 2 and rows["memory"]["process RSS"] > 0  # --quick: N_sup = 2


def test_numpyro_loss_ab_benchmark(tmp_path):
    out = run("numpyro_loss_ab.py", "--old", str(ROOT), "--quick", "--repeats", "1", "--json", str(tmp_path / "a.json"))
    med = json.loads((tmp_path / "a.json").read_text())["median_cpu_s"]
    assert "this tree / --old" in out and set(med) == {"numpyro (this tree)", "numpyro (--old)", "pyro"}
    assert all(v > 0 for v in med.values())


@pytest.mark.slow
def test_scaling_benchmark(tmp_path):
    out = run("scaling.py", "--quick", "--json", str(tmp_path / "s.json"))
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert "| 2 |" in out and [r["ranks"] for r in rows] == [1, 2] and all(r["puzzles_per_s"] > 0 for r in rows)
