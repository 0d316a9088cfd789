"""The Python API exported by gram_ppl (inference/api.py): a run is a folder, a LoadedRun or a
FitResult; the names load lazily, so `import gram_ppl` loads no inference code."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from tiny import tiny_config

import gram_ppl as gp


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return gp.fit(tiny_config(), tmp_path_factory.mktemp("api") / "run", steps=2, progress=False, eval_puzzles=4)


def test_every_exported_name_resolves():
    for name in gp.__all__:
        assert getattr(gp, name) is not None, name
    assert {"fit", "load_run", "sample", "evaluate", "to_inference_data", "diagnose"} <= set(dir(gp))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gp.nope  # noqa: B018


def test_importing_gram_ppl_loads_no_inference_code():
    code = "import sys, gram_ppl; assert not [m for m in sys.modules if m.startswith('gram_ppl.inference')]"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_is_a_folder_a_loaded_run_or_a_fit_result(result):
    x = gp.load_run(result.folder).data.test.x[:2]
    by_folder = gp.sample(result.folder, x, num_samples=3, seed=4)
    by_result = gp.sample(result, x, num_samples=3, seed=4)
    by_loaded = gp.sample(gp.load_run(result.folder), x[0], num_samples=3, seed=4)  # one puzzle (L_x,)
    assert by_folder.boards.shape == (3, 2, 25) and by_folder.valid.shape == (3, 2)
    np.testing.assert_array_equal(by_folder.boards, by_result.boards)
    one = gp.sample(result.folder, x[:1], num_samples=3, seed=4)  # the same draws need the same batch
    np.testing.assert_array_equal(by_loaded.boards, one.boards)
    assert gp.evaluate(result, num_samples=2, puzzles=3)["puzzles"] == 3
    with pytest.raises(TypeError, match="run folder, a LoadedRun or a FitResult"):
        gp.sample(42, x)


def test_bad_puzzles_are_refused(result):
    bad = np.full(25, 2, dtype=np.uint8)  # 25 queens on a 5x5 board
    with pytest.raises(gp.PuzzleError):
        gp.sample(result, bad, num_samples=2)


def test_compare_tables_runs_side_by_side_with_elpd(result):
    table = gp.compare({"a": result, "b": result.folder}, num_samples=2, puzzles=3, elpd=2)
    assert table.count("| a |") == 2 and table.count("| b |") == 2  # the metrics table and the elpd table
    assert "coverage@2" in table and "elpd" in table.lower()
    assert "| b |" in gp.compare([result.folder], num_samples=2, puzzles=3).replace(str(result.folder), "b")
    with pytest.raises(ValueError, match="at least one run"):
        gp.compare({})
    with pytest.raises(ValueError, match="distinct runs"):
        gp.compare([result.folder, result.folder], num_samples=2, puzzles=3, elpd=2)


def test_compare_arms_of_several_seeds(result, tmp_path):
    other = gp.fit(dataclasses.replace(result.config, fit=dataclasses.replace(result.config.fit, seed=5)),
                   tmp_path / "s5", steps=1, progress=False)  # fmt: skip
    table = gp.compare({"two": [result, other], "one": result}, num_samples=2, puzzles=3, elpd=2)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| two") or
            line.startswith("| one")}  # fmt: skip
    assert "| 2 |" in rows["two"] and "seed spread unknown" in rows["one"] and " ± " in rows["two"]
    assert "| two | 2 |" in table and "seed spread unknown" in table.split("held-out log p")[1]
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        gp.compare({"a": [result, result.folder]}, num_samples=2, puzzles=3)
    beta = gp.fit(dataclasses.replace(result.config, fit=dataclasses.replace(result.config.fit, beta=2.0)),
                  tmp_path / "beta", steps=1, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="differ in fit.beta, not only in the seed"):
        gp.compare({"a": [result, beta]}, num_samples=2, puzzles=3)
