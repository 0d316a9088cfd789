import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gram_ppl.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "puzzles"
# Every leaf command of `gram`, each exercised by a test (fit, evaluate, compare: test_inference.py;
# sample, generate: test_sampling.py); a new command fails test_every_command_is_tested until added.
TESTED = {
    "data build",
    "data info",
    "data export",
    "data overlap",
    "solve",
    "verify",
    "fit",
    "evaluate",
    "compare",
    "sample",
    "generate",
    "diagnose",  # tests/test_diagnostics.py
    "convert",  # tests/test_numpyro_backend.py
    "refit-prior",  # test_refit_prior_gives_a_run_whose_prior_has_the_guides_directions
}


def run(*argv, stdin=b""):
    """The CLI as a user runs it: a subprocess of `python -m gram_ppl`."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "gram_ppl", *argv], input=stdin, capture_output=True, env=env)


def leaf_commands(parser, prefix=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaf_commands(sub, f"{prefix} {name}".strip()) or []
            return
    yield prefix


def test_every_command_is_tested():
    assert set(leaf_commands(build_parser())) == TESTED


@pytest.fixture(scope="module")
def nqueens8(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "nq8"
    assert main(["data", "build", "--task", "nqueens", "--size", "8", "--out", str(out)]) == 0
    return out


def test_data_build_info_and_export(nqueens8, capsys):
    assert main(["data", "info", str(nqueens8)]) == 0
    info = capsys.readouterr().out
    assert "checksums verified" in info and "train: 7220 items" in info and "test: 772 items" in info
    assert main(["data", "export", str(nqueens8), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(line) == 64 and set(line) <= {".", "Q"} for line in lines)


def test_data_overlap_finds_inputs_and_their_images(nqueens8, tmp_path, capsys):
    from gram_ppl.data import fingerprint, load_dataset

    ds_dir = tmp_path / "s4"
    assert main(["data", "build", "--task", "sudoku", "--size", "4", "--mode", "unique", "--split", "orbit",
                 "--out", str(ds_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    main(["data", "export", str(ds_dir), "--split", "train", "--limit", "3"])
    train = capsys.readouterr().out.splitlines()
    main(["data", "export", str(ds_dir), "--limit", "2"])
    test = capsys.readouterr().out.splitlines()
    image = train[0].translate(str.maketrans("12", "21"))  # digits 1 and 2 renamed: the same orbit
    assert image not in train
    (tmp_path / "p.txt").write_text("\n".join([*train, image, *test]) + "\n")
    assert main(["data", "overlap", str(ds_dir), "--puzzles", str(tmp_path / "p.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(": 6 puzzles")  # under the orbit split no test input is an image of a training one
    assert "3 identical, 4 share an orbit key with one" in lines[1] and lines[1].startswith("  train (")
    assert "2 identical, 2 share an orbit key with one" in lines[2] and lines[2].startswith("  test (")
    run = tmp_path / "run"  # a run folder: its data set rebuilt from the fingerprint it keeps
    run.mkdir()
    (run / "data.json").write_text(json.dumps(fingerprint(load_dataset(ds_dir))))
    assert main(["data", "overlap", str(run), "--puzzles", str(tmp_path / "p.txt")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == lines[1:]
    record = json.loads((run / "data.json").read_text())
    record["arrays"]["train/x"]["sha256"] = "0" * 64  # not the data set the run trained on: refused
    (run / "data.json").write_text(json.dumps(record))
    assert main(["data", "overlap", str(run), "--puzzles", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err  # which arrays differ, as `gram evaluate` warns of them
    assert "is not the one the run trained on" in err and "train/x: " in err
    (run / "data.json").write_text("{")  # an unreadable data.json: named, not a traceback
    assert main(["data", "overlap", str(run), "--puzzles", str(tmp_path / "p.txt")]) == 2
    assert "data.json: cannot be read" in capsys.readouterr().err
    (run / "data.json").rename(run / "config.json")  # a run folder from before data.json: refused, with the way out
    assert main(["data", "overlap", str(run), "--puzzles", str(tmp_path / "p.txt")]) == 2
    assert "build it with gram data build and give that folder" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("12\n")  # a line that is no 4x4 puzzle: reported, nothing checked
    assert main(["data", "overlap", str(ds_dir), "--puzzles", str(tmp_path / "bad.txt")]) == 2
    assert "bad.txt:1: expected 16 characters" in capsys.readouterr().err
    main(["data", "export", str(nqueens8), "--limit", "2"])  # a task without orbit keys: inputs only
    (tmp_path / "q.txt").write_text(capsys.readouterr().out)
    assert main(["data", "overlap", str(nqueens8), "--puzzles", str(tmp_path / "q.txt")]) == 0
    out = capsys.readouterr().out
    assert "0 identical; nqueens has no orbit key" in out and "2 identical; nqueens has no orbit key" in out


def test_data_build_refuses_a_non_empty_folder_and_bad_config(nqueens8, capsys):
    assert main(["data", "build", "--task", "nqueens", "--size", "8", "--out", str(nqueens8)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "build", "--task", "nqueens", "--size", "20", "--out", str(nqueens8) + "x"]) == 2
    assert "size for task 'nqueens' must be one of [4, 5, 6" in capsys.readouterr().err


def test_data_info_on_a_tampered_folder_names_the_file(tmp_path, capsys):
    out = tmp_path / "ds"
    main(["data", "build", "--task", "sudoku", "--size", "4", "--out", str(out)])
    (out / "test.npz").write_bytes(b"garbage")
    assert main(["data", "info", str(out)]) == 2
    assert "test.npz: checksum mismatch" in capsys.readouterr().err


def test_solve_one_all_and_count(tmp_path, capsys):
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("# two 6-Queens puzzles\n" + "." * 36 + "\n\n" + ".Q" + "." * 34 + "\n")
    assert main(["solve", "--task", "nqueens", "--size", "6", "--puzzles", str(puzzles), "--count"]) == 0
    assert capsys.readouterr().out.split() == ["4", "1"]
    assert main(["solve", "--task", "nqueens", "--size", "6", "--puzzles", str(puzzles), "--all"]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert [len(b.split()) for b in blocks[:2]] == [4, 1]
    assert main(["solve", "--task", "nqueens", "--size", "6", "--puzzles", str(puzzles), "--all", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    assert main(["solve", "--task", "nqueens", "--size", "6", "--puzzles", str(puzzles)]) == 0
    first = capsys.readouterr().out.split()
    assert len(first) == 2 and first[1][1] == "Q"


def test_solve_then_verify_round_trip(tmp_path, capsys):
    puzzles = EXAMPLES / "sudoku9.txt"
    assert main(["solve", "--task", "sudoku", "--size", "9", "--puzzles", str(puzzles)]) == 0
    solved = tmp_path / "s.txt"
    solved.write_text(capsys.readouterr().out)
    verify = ["verify", "--task", "sudoku", "--size", "9", "--puzzles", str(puzzles), "--solutions", str(solved)]
    assert main(verify) == 0
    assert set(capsys.readouterr().out.split()[1::2]) == {"valid"}
    lines = solved.read_text().splitlines()
    lines[0] = lines[0][::-1]  # still a valid grid, but the givens change
    solved.write_text("\n".join(lines))
    assert main(verify) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("conflicts") and not first.endswith(" 0 conflicts")


def test_verify_reports_conflicts_per_line(tmp_path, capsys):
    p, s = tmp_path / "p.txt", tmp_path / "s.txt"
    p.write_text("." * 16 + "\n" + "." * 16 + "\n")
    s.write_text(".Q.....QQ.....Q.\n" + "Q" * 16 + "\n")
    assert main(["verify", "--task", "nqueens", "--size", "4", "--puzzles", str(p), "--solutions", str(s)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "1: valid" and out.out.splitlines()[1].startswith("2: ")
    assert "1 of 2 valid" in out.err


@pytest.mark.parametrize(
    "task, size, lines, reasons",
    [
        ("nqueens", 4, ["Q...Q...........", "..", "Q..x" + "." * 12], ["attack each other", "expected 16", "'x'"]),
        ("nqueens", 4, ["Q" + "." * 15], ["cannot be completed"]),
        ("sudoku", 4, ["11" + "." * 14, "1..." * 4], ["digit 1 appears twice in row 1", "twice in column 1"]),
        ("coloring", 4, ['{"n": 4, "edges": [[0,1],[0,2],[0,3],[1,2],[1,3],[2,3]]}'], ["not 3-colourable"]),
        ("coloring", 4, ['{"n": 4, "edges": [[2,2]]}', '{"n": 4, "edges": [[0,7]]}'], ["self-loop", "outside 0..3"]),
    ],
)
def test_bad_lines_are_named_with_reason_and_exit_2(task, size, lines, reasons):
    good = {"nqueens": "." * 16, "sudoku": "." * 16, "coloring": '{"n": 4, "edges": [[0, 1]]}'}[task]
    text = "\n".join([good, *lines]) + "\n"
    r = run("solve", "--task", task, "--size", str(size), "--puzzles", "-", stdin=text.encode())
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b"" and "Traceback" not in err
    for k, reason in enumerate(reasons):
        assert f"<stdin>:{k + 2}: " in err and reason in err
    skip = run("solve", "--task", task, "--size", str(size), "--puzzles", "-", "--skip-invalid", stdin=text.encode())
    assert skip.returncode == 0 and len(skip.stdout.decode().splitlines()) == 1
    assert skip.stderr.decode().count("skipped ") == len(reasons)


def test_missing_file_and_usage_errors_exit_2_without_traceback(tmp_path):
    r = run("solve", "--task", "nqueens", "--size", "8", "--puzzles", "/nonexistent/file")
    assert r.returncode == 2 and b"Traceback" not in r.stderr and b"No such file" in r.stderr
    r = run("solve", "--task", "nqueens", "--size", "8", "--puzzles", str(tmp_path))
    assert r.returncode == 2 and b"Traceback" not in r.stderr and b"Is a directory" in r.stderr
    r = run("data", "info", str(tmp_path))
    assert r.returncode == 2 and b"manifest.json: missing" in r.stderr
    r = run("solve", "--task", "chess", "--size", "8", "--puzzles", "-")
    assert r.returncode == 2 and b"invalid choice" in r.stderr


def test_console_script_is_installed():
    r = subprocess.run([Path(sys.executable).parent / "gram", "--help"], capture_output=True)
    assert r.returncode == 0 and b"solve" in r.stdout


@pytest.mark.parametrize("task, size", [("nqueens", 5), ("sudoku", 4), ("coloring", 4)])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(task, size, data):
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        for extra in ([], ["--skip-invalid"], ["--count"]):
            try:
                rc = main(["solve", "--task", task, "--size", str(size), "--puzzles", f.name, *extra])
            except SystemExit as e:  # argparse only
                pytest.fail(f"SystemExit {e}")
            assert rc in (0, 2)


@pytest.mark.parametrize("task, size", [("nqueens", 4), ("sudoku", 4), ("coloring", 4)])
@given(puzzles=st.binary(max_size=200), solutions=st.binary(max_size=200))
def test_verify_on_arbitrary_bytes_never_crashes(task, size, puzzles, solutions):
    with tempfile.TemporaryDirectory() as tmp:
        p, s = Path(tmp) / "p", Path(tmp) / "s"
        p.write_bytes(puzzles)
        s.write_bytes(solutions)
        assert main(["verify", "--task", task, "--size", str(size), "--puzzles", str(p), "--solutions", str(s)]) in (
            0,
            1,
            2,
        )


@pytest.mark.parametrize("task, size", [("nqueens", 5), ("sudoku", 4), ("coloring", 4)])
@given(lines=st.lists(st.text(alphabet='.Q0123456789{}[],:" nedgscolr', max_size=70), max_size=5))
def test_near_miss_text_never_crashes(task, size, lines):
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join(lines))
        f.flush()
        code = main(["solve", "--task", task, "--size", str(size), "--puzzles", f.name, "--skip-invalid"])
        blank = all(not line.strip() or line.strip().startswith("#") for line in "\n".join(lines).split("\n"))
        assert code == (2 if blank else 0)  # a file without a single puzzle line is an error


def test_example_files_all_parse_and_solve(capsys):
    cases = {"nqueens8.txt": ("nqueens", 8), "sudoku9.txt": ("sudoku", 9), "sudoku4-multi.txt": ("sudoku", 4),
             "coloring8.jsonl": ("coloring", 8), "petersen.jsonl": ("coloring", 10)}  # fmt: skip
    assert {p.name for p in EXAMPLES.iterdir()} == set(cases)
    for name, (task, size) in cases.items():
        assert main(["solve", "--task", task, "--size", str(size), "--puzzles", str(EXAMPLES / name), "--count"]) == 0
        counts = [int(v) for v in capsys.readouterr().out.split()]
        assert counts and min(counts) >= 1
        if name == "sudoku4-multi.txt":
            assert min(counts) >= 2
    json.loads((EXAMPLES / "petersen.jsonl").read_text())


def test_small_input_cases(tmp_path, capsys):
    # a 5000-digit integer in a colouring line is that line's error, with its number
    huge = '{"n": 8, "edges": [[0, ' + "9" * 5000 + "]]}"
    good = '{"n": 8, "edges": [[0, 1]]}'
    p = tmp_path / "c.jsonl"
    p.write_text(huge + "\n" + good + "\n")
    assert main(["solve", "--task", "coloring", "--size", "8", "--puzzles", str(p), "--count", "--skip-invalid"]) == 0
    out = capsys.readouterr()
    assert "c.jsonl:1: not valid JSON" in out.err and out.out.strip().isdigit()
    # a UTF-8 byte-order mark is not a cell
    q = tmp_path / "q.txt"
    q.write_bytes("\ufeff".encode() + b"Q" + b"." * 63 + b"\n")
    assert main(["solve", "--task", "nqueens", "--size", "8", "--puzzles", str(q), "--count"]) == 0
    assert capsys.readouterr().out.strip() == "4"
    # an empty puzzle file is an error, not a silent success
    e = tmp_path / "e.txt"
    e.write_text("# nothing here\n\n")
    assert main(["solve", "--task", "nqueens", "--size", "8", "--puzzles", str(e)]) == 2
    assert "no puzzles" in capsys.readouterr().err
    # --limit must be positive (a negative one used to drop the last puzzle)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "export", str(tmp_path), "--limit", "-1"])


def test_data_build_force_replaces_only_a_data_set(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    args = ["data", "build", "--task", "nqueens", "--size", "5", "--out", str(folder), "--force"]
    assert main(args) == 2
    assert "not a data set's (thesis.tex)" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "precious"
    ds = tmp_path / "ds"
    assert main(["data", "build", "--task", "nqueens", "--size", "5", "--out", str(ds)]) == 0
    assert main(["data", "build", "--task", "nqueens", "--size", "5", "--out", str(ds), "--force"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (ds.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's 0700


def test_blank_grids_for_a_completion_run_warn_and_data_info_prints_the_mode(tmp_path, capsys):
    import numpy as np

    from gram_ppl.cli.runs import mode_mismatch
    from gram_ppl.config import TaskConfig

    blank, clue = np.ones(16, np.uint8), np.ones(16, np.uint8)
    clue[0] = 2
    assert "blank grids" in mode_mismatch(TaskConfig(name="sudoku", size=4, mode="multi"), [blank, clue])
    assert "have clues" in mode_mismatch(TaskConfig(name="sudoku", size=4, mode="generate"), [clue])
    assert mode_mismatch(TaskConfig(name="sudoku", size=4, mode="multi"), [clue]) is None
    assert mode_mismatch(TaskConfig(name="nqueens", size=5), [np.ones(25, np.uint8)]) is None
    assert "have clues" in mode_mismatch(TaskConfig(name="sudoku", size=4), [clue])  # mode None: 4x4 generates
    assert mode_mismatch(TaskConfig(name="sudoku", size=4), [blank]) is None
    assert main(["data", "build", "--task", "sudoku", "--size", "4", "--mode", "multi", "--num-train", "4",
                 "--num-test", "2", "--out", str(tmp_path / "d")]) == 0  # fmt: skip
    assert "mode multi" in capsys.readouterr().out


def test_refit_prior_gives_a_run_whose_prior_has_the_guides_directions(tmp_path, capsys):
    run, out = tmp_path / "dig", tmp_path / "dig-r2"
    base = ["--task", "digits", "--size", "8", "--steps", "2", "--set", "net.dim=16", "--set", "net.layers=1"]
    assert main(["fit", *base, "--set", "fit.batch_size=8", "--quiet", "--out", str(run)]) == 0
    assert main(["refit-prior", str(run), "--rank", "2", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["priors"]["rank"] == 2 and json.loads((run / "config.json").read_text())["priors"]["rank"] == 0
    from gram_ppl.inference.api import load_run
    from gram_ppl.inference.prior_fit_pyro import shifts

    old, new = load_run(run), load_run(out)
    sh = shifts(old, old.data.train.y)
    w = new.net.prior_factor.detach().double().reshape(-1, 2)  # (L·D, 2): σ ⊙ V_2 Λ_2^½
    expected = sh.root[:, None] * sh.vt[:2].T * sh.lam[:2].sqrt()
    assert float((w - expected).abs().max()) < 1e-4 * float(expected.abs().max())
    for name, value in old.net.state_dict().items():  # every other weight moves over unchanged
        assert (new.net.state_dict()[name] == value).all(), name
    assert main(["generate", str(out), "--num", "4", "--out", str(tmp_path / "g.txt")]) == 0
    capsys.readouterr()
    assert main(["refit-prior", str(out), "--rank", "2", "--out", str(tmp_path / "again")]) == 2
    assert "already has a low-rank prior" in capsys.readouterr().err
    assert main(["refit-prior", str(run), "--rank", "2", "--out", str(out)]) == 2  # not over a run
    assert "not empty" in capsys.readouterr().err
    mix = tmp_path / "dig-r2k3"
    assert main(["refit-prior", str(run), "--rank", "2", "--components", "3", "--out", str(mix)]) == 0
    assert json.loads((mix / "config.json").read_text())["priors"]["components"] == 3
    from gram_ppl.inference.prior_fit_pyro import fit_mixture, shift_coords

    gmm = fit_mixture(shift_coords(sh, sh.mu_q, 2), 3, seed=0)  # the same EM, fitted again here
    net = load_run(mix).net
    offset = net.prior_offset.detach().double().reshape(3, -1)  # (K, L·D): σ ⊙ (m + V_2 c_k)
    expected = sh.root * (sh.m + torch.as_tensor(gmm.means_) @ sh.vt[:2])
    assert float((offset - expected).abs().max()) < 1e-4 * float(expected.abs().max())
    w = net.prior_factor.detach().double().reshape(3, -1, 2)  # (K, L·D, 2): W_k W_kᵀ = σ V C_k Vᵀ σ
    cov = torch.as_tensor(gmm.covariances_)  # (K, 2, 2)
    expected = sh.root[:, None] * (sh.vt[:2].T @ cov @ sh.vt[:2]) * sh.root  # (K, L·D, L·D)
    assert float((w @ w.transpose(-1, -2) - expected).abs().max()) < 1e-4 * float(expected.abs().max())
    np.testing.assert_allclose(torch.softmax(net.prior_logit.detach(), 0).numpy(), gmm.weights_, rtol=1e-5)
    assert main(["generate", str(mix), "--num", "4", "--out", str(tmp_path / "gm.txt")]) == 0
    capsys.readouterr()
    assert main(["refit-prior", str(run), "--rank", "2", "--components", "0", "--out", str(tmp_path / "k0")]) == 2
    assert "components must be >= 1" in capsys.readouterr().err
