"""A tiny GramConfig shared by the model and inference tests (D=16, K=1, T=2, N_sup=2, no KL
ceiling and a constant learning rate unless a test asks for them: tests/test_quality_options.py
and tests/test_inference.py cover both)."""

import contextlib
import io
import types

from gram_ppl.config import FitConfig, GramConfig, NetConfig, TaskConfig


def tiny_config(**fit) -> GramConfig:
    return GramConfig(
        task=TaskConfig(name="nqueens", size=5),
        net=NetConfig(dim=16, heads=2, layers=1),
        fit=FitConfig(
            **{"K": 1, "T": 2, "n_sup": 2, "batch_size": 8, "lr": 1e-3, "kl_cap_weight": 0.0, "lr_decay": 0.0, **fit}
        ),
    )


def gram_in_process(*args):
    """`gram ARGS` in this process (no interpreter start-up per command): exit code and output."""
    from gram_ppl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
