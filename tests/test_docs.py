"""The examples in the docs run: every fenced puzzle in docs/formats.md parses and solves, and the
commands the README promises exist in the Makefile and the CLI."""

import re
from pathlib import Path

import pytest

from gram_ppl.cli import main

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"N-Queens": ("nqueens", 8), "Sudoku": ("sudoku", 6), "Graph 3-colouring": ("coloring", 8)}


def fenced_examples():
    text = (ROOT / "docs" / "formats.md").read_text()
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = next((k for k in SECTIONS if section.startswith(k)), None)
        if title:
            for block in re.findall(r"```\n(.*?)```", section, flags=re.S):
                yield title, block


def test_every_task_section_has_an_example():
    assert {t for t, _ in fenced_examples()} == set(SECTIONS)


@pytest.mark.parametrize("title, block", list(fenced_examples()), ids=lambda v: v if len(v) < 20 else "block")
def test_documented_puzzles_solve(title, block, tmp_path, capsys):
    task, size = SECTIONS[title]
    path = tmp_path / "p.txt"
    path.write_text(block)
    assert main(["solve", "--task", task, "--size", str(size), "--puzzles", str(path), "--count"]) == 0
    assert all(int(n) >= 1 for n in capsys.readouterr().out.split())


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"`make (\w+)`", readme):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def readme_python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_blocks()[0], "README.md", "exec"), {})
    assert (tmp_path / "data" / "col8" / "manifest.json").is_file()


def test_readme_fit_sample_inspect_example_runs_in_15_lines(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    code = readme_python_blocks()[1]
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    scope = {}
    try:
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        plt.close("all")
    assert (tmp_path / "runs" / "readme" / "checkpoint.pt").is_file() and (tmp_path / "gallery.png").is_file()
    assert scope["s"].boards.shape == (16, 4, 16) and "log_likelihood" in scope["idata"].groups()
