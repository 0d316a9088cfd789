"""How long `gram sample` takes on a 6×6 Sudoku run, from the shell to the last output line.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--json out.json]

Trains a 6×6 Sudoku run for a few batches (its weights do not matter here; the networks have
the run's full default size), writes 8 held-out puzzles to a file, then times the whole
command `gram sample RUN --puzzles FILE --num-samples 20 --out -` in fresh processes (imports,
loading the run, sampling, writing). Target: under 3 s; the data set is never rebuilt for it.
Also times `python -c "import gram_ppl.inference.svi_pyro"` (torch + Pyro imports alone) to
show how much of the start is the interpreter and the libraries.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_json

from gram_ppl.config import GramConfig, TaskConfig
from gram_ppl.data import build_dataset
from gram_ppl.inference.run import fit
from gram_ppl.models.priors import PRIORS


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=6, help="Sudoku side (6: the target's case; 4: a smoke run)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = GramConfig(task=TaskConfig(name="sudoku", size=args.size, mode="unique"), priors=PRIORS)
        data = build_dataset(cfg.task)
        fit(cfg, run, steps=2, data=data, progress=False, eval_puzzles=2)
        puzzles = Path(tmp) / "puzzles.txt"
        puzzles.write_text("".join(data.task.format_puzzle(x) + "\n" for x in data.test.x[:8]))
        cmd = [sys.executable, "-m", "gram_ppl", "sample", str(run), "--puzzles", str(puzzles),
               "--num-samples", "20", "--out", "-"]  # fmt: skip
        imports = [sys.executable, "-c", "import gram_ppl.inference.svi_pyro"]
        wall(cmd)  # warm the file cache
        sample_s = [wall(cmd) for _ in range(args.repeats)]
        import_s = [wall(imports) for _ in range(args.repeats)]
    row = {
        "task": f"sudoku {args.size}x{args.size}",
        "dim": cfg.net.dim,
        "sample_median_s": statistics.median(sample_s),
        "sample_s": sample_s,
        "imports_median_s": statistics.median(import_s),
        "target_s": 3.0,
    }
    print(f"gram sample ({row['task']}, 8 puzzles x 20 samples): median {row['sample_median_s']:.2f} s "
          f"over {args.repeats} (target < 3 s); torch + Pyro imports alone {row['imports_median_s']:.2f} s")  # fmt: skip
    if args.json:
        write_json(args.json, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
