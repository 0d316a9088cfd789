"""Import directions: the library never imports models/ or inference/ (the CLI only inside its
commands); tasks, config and data need neither torch nor jax; config needs only the stdlib;
torch appears only in the torch networks, and pyro only in models/ and inference/."""

import ast
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


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_models_or_inference(path):
    lazy = path.name == "cli.py"  # the CLI may import them inside its commands, never at import time
    assert not {top(m) for m in imported_modules(path, top_level_only=lazy)} & {"models", "inference"}


def test_config_imports_only_the_standard_library():
    assert {top(m) for m in imported_modules(ROOT / "gram_ppl" / "config.py")} <= set(STDLIB) | {"__future__"}


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl" / "tasks").glob("*.py")), ids=lambda p: p.name)
def test_tasks_import_numpy_and_stdlib_only(path):
    assert {top(m) for m in imported_modules(path)} <= set(STDLIB) | {"__future__", "numpy", "gram_ppl"}


def test_importing_the_data_side_loads_neither_torch_nor_jax():
    code = (
        "import sys, gram_ppl, gram_ppl.tasks, gram_ppl.config, gram_ppl.data, gram_ppl.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'jax', 'pyro', 'numpyro', 'flax'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_models_and_inference_come_from_this_repository():
    import inference
    import models

    for mod in (models, inference):
        assert Path(mod.__file__).resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("path", sorted((ROOT / "gram_ppl").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_only_in_the_torch_networks_and_pyro_never_in_the_library(path):
    mods = {top(m) for m in imported_modules(path)}
    assert "pyro" not in mods
    if "torch" in mods:
        assert path.name == "torch_nets.py"
