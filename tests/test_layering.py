"""Import directions and names: one top-level package, gram_ppl, whose models/ and inference/
folders install as gram_ppl.models and gram_ppl.inference; the library floor (gram_ppl/) never
imports them (the CLI only inside its commands); tasks, config and data need neither torch nor
jax; config needs only the stdlib; torch appears only in the torch networks, and pyro only in
models/ and inference/."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = sys.stdlib_module_names


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


UPPER = {"gram_ppl.models", "gram_ppl.inference"}


def _upper(names: set[str]) -> set[str]:
    return {m for m in names if any(m == u or m.startswith(u + ".") for u in UPPER)}


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_models_or_inference(path):
    lazy = path.parent.name == "cli"  # the CLI may import them inside its commands, never at import time
    tree = ast.parse(path.read_text())
    names = imported_modules(path, top_level_only=lazy)
    for node in tree.body if lazy else ast.walk(tree):  # `from gram_ppl import models` counts too
        if isinstance(node, ast.ImportFrom) and node.module == "gram_ppl":
            names |= {f"gram_ppl.{a.name}" for a in node.names}
    assert not _upper(names)


def _project_sources():
    for path in sorted(ROOT.rglob("*.py")):
        if not {".venv", "runs", "build"} & set(path.relative_to(ROOT).parts):
            yield path.relative_to(ROOT), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path.relative_to(ROOT), "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_no_bare_models_or_inference_imports_anywhere():
    bad = []
    for where, source in _project_sources():
        for node in ast.walk(ast.parse(source)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bad += [f"{where}: {n}" for n in names if top(n) in {"models", "inference"}]
    assert not bad, bad


def test_one_top_level_package_and_the_subpackages_come_from_this_repository():
    from importlib.metadata import distribution

    import gram_ppl.inference
    import gram_ppl.models

    assert distribution("gram-ppl").read_text("top_level.txt").split() == ["gram_ppl"]
    assert Path(gram_ppl.models.__file__).resolve() == ROOT / "models" / "__init__.py"
    assert Path(gram_ppl.inference.__file__).resolve() == ROOT / "inference" / "__init__.py"


def test_a_folder_with_its_own_models_and_inference_does_not_shadow_ours(tmp_path):
    for name in ("models", "inference"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user folder {name} was imported')\n")
    code = "import gram_ppl.models, gram_ppl.inference.run; print(gram_ppl.models.get_model('pyro').__name__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "gram_ppl.models.gram_pyro"
    r = subprocess.run(
        [sys.executable, "-m", "gram_ppl", "fit", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["config", "task_defaults", "presets", "overrides", "sites", "seeds"])
def test_config_imports_only_the_standard_library(name):
    """The config modules (and what they import of gram_ppl) import the standard library only."""
    ours = {"gram_ppl.config", "gram_ppl.task_defaults"}
    mods = imported_modules(ROOT / "gram_ppl" / f"{name}.py")
    assert {top(m) for m in mods if m not in ours} <= set(STDLIB) | {"__future__"}


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl" / "tasks").glob("*.py")), ids=lambda p: p.name)
def test_tasks_import_numpy_and_stdlib_only(path):
    extra = {"sklearn"} if path.name == "digits.py" else set()  # its images and judge, imported when used
    assert {top(m) for m in imported_modules(path)} <= set(STDLIB) | {"__future__", "numpy", "gram_ppl"} | extra


def test_importing_the_data_side_loads_neither_torch_nor_jax():
    code = (
        "import sys, gram_ppl, gram_ppl.tasks, gram_ppl.config, gram_ppl.data, gram_ppl.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'jax', 'pyro', 'numpyro', 'flax', 'sklearn'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_only_in_the_torch_networks_and_pyro_never_in_the_library(path):
    mods = {top(m) for m in imported_modules(path)}
    assert "pyro" not in mods
    if "torch" in mods:
        assert path.name == "torch_nets.py"


NEUTRAL = (
    "backend",
    "run",
    "loading",
    "sampling",
    "runfolder",
    "evaluate",
    "resources",
    "objective",
    "tempering",
    "svi_numpyro",
)


@pytest.mark.parametrize("name", NEUTRAL)
def test_the_shared_inference_code_and_the_numpyro_backend_import_no_torch(name):
    """At import time (tests/test_backend.py runs the whole NumPyro path with torch refused)."""
    assert not {top(m) for m in imported_modules(ROOT / "inference" / f"{name}.py", top_level_only=True)} & {
        "torch",
        "pyro",
    }


def test_the_command_line_sits_above_what_it_calls():
    """Nothing in the library, models or inference imports the CLI (only `python -m gram_ppl`)."""
    bad = []
    for where, source in _project_sources():
        if where.parts[0] in ("gram_ppl", "models", "inference") and "cli" not in where.parts:
            if where.name == "__main__.py":
                continue
            mods = {getattr(n, "module", None) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
            mods |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
            bad += [f"{where}: {m}" for m in mods if m and (m == "gram_ppl.cli" or m.startswith("gram_ppl.cli."))]
    assert not bad, bad


def test_the_command_line_reaches_the_library_through_the_one_facade():
    """gram_ppl/cli imports inference code from inference/api.py only (one public facade)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "gram_ppl" / "cli"
    used = {m for p in root.glob("*.py") for m in re.findall(r"from gram_ppl\.inference\.(\w+) import", p.read_text())}
    assert used == {"api"}, used


def test_random_streams_are_named_in_one_place():
    """Every sampling call takes its seed from gram_ppl/seeds.py by name: no offset from fit.seed
    is written anywhere else, and no two streams share a seed."""
    import re

    from gram_ppl.config import GramConfig
    from gram_ppl.seeds import STREAMS, seed_for

    code = [p for d in ("gram_ppl", "inference", "models", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    offenders = [str(p) for p in code if p.name != "seeds.py" and re.search(r"fit\.seed\s*\+", p.read_text())]
    assert offenders == []
    cfg = GramConfig()
    seeds = [seed_for(cfg, s) for s in STREAMS]
    assert len(set(seeds)) == len(seeds)
