"""ArviZ 0.23's once-a-day FutureWarning never reaches a test, notebook, CLI command or user:
every import of arviz in the package, CLI and notebooks goes through `import_arviz`, which
silences it even on a machine's first import of the day (an empty cache folder)."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True)


def test_import_arviz_is_silent_with_an_empty_cache_under_warnings_as_errors(tmp_path):
    bare = _run("import arviz", tmp_path / "bare")  # the control: arviz itself warns on a first import
    assert bare.returncode != 0 and "ArviZ is undergoing a major refactor" in bare.stderr
    ours = _run("from gram_ppl.diagnostics import import_arviz; az = import_arviz(); az.from_dict", tmp_path / "ours")
    assert ours.returncode == 0, ours.stderr
    assert "ArviZ" not in ours.stderr


def _imports_arviz(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "arviz" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "arviz":
            return True
    return False


def test_nothing_but_import_arviz_imports_arviz():
    offenders = []
    for path in sorted(ROOT.glob("[!.]*/**/*.py")):
        if ".venv" in path.parts or path == ROOT / "gram_ppl" / "diagnostics.py":
            continue
        if _imports_arviz(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if any(_imports_arviz("".join(c["source"])) for c in cells if c["cell_type"] == "code"):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"import arviz through gram_ppl.diagnostics.import_arviz: {offenders}"
    tree = ast.parse((ROOT / "gram_ppl" / "diagnostics.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not any(_imports_arviz(ast.unparse(n)) for n in top_level)  # only inside import_arviz
