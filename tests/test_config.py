import dataclasses
import json

import pytest

from gram_ppl.config import ConfigError, FitConfig, GramConfig, TaskConfig, from_dict, to_dict


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"name": "queens"},
            "name must be one of \\['nqueens', 'nqueens_rows', 'sudoku', 'coloring', 'coloring_rows', 'digits', 'arc1', 'arc2'\\], got 'queens'",
        ),
        ({"name": "sudoku", "size": 5}, "size for task 'sudoku' must be one of \\[4, 6, 9\\]"),
        ({"name": "sudoku", "size": 6, "mode": "hard"}, "mode must be one of \\['generate', 'unique', 'multi'\\]"),
        ({"mode": "unique"}, "mode applies to sudoku and digits only"),
        ({"removed": (0, 9)}, "removed must be queen counts in 1..8"),
        ({"test_fraction": 1.0}, "test_fraction must be in"),
        ({"name": "coloring", "edge_prob": 0.0}, "edge_prob must be in"),
        ({"num_train": -1}, "num_train must be a non-negative integer"),
        ({"name": "sudoku", "size": 4, "split": "orbit"}, "generation's input is the blank board"),
        ({"split": "random"}, "split must be one of \\['input', 'orbit'\\]"),
    ],
)
def test_invalid_values_name_the_field_and_allowed_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig(**kwargs)


def test_frozen_and_changed_with_replace():
    cfg = TaskConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.size = 10
    assert dataclasses.replace(cfg, size=10).size == 10
    with pytest.raises(ConfigError):
        dataclasses.replace(cfg, size=3)


@pytest.mark.parametrize(
    "cfg",
    [TaskConfig(), TaskConfig(name="sudoku", size=9, mode="multi"), TaskConfig(name="coloring", size=10, seed=4)],
)
def test_json_round_trip_of_resolved_configs(cfg):
    full = cfg.resolved()
    assert from_dict(TaskConfig, json.loads(json.dumps(to_dict(full)))) == full
    assert full.resolved() == full


def test_resolved_defaults():
    assert TaskConfig(size=10).resolved().removed == (7, 8, 9)  # the paper's k for 10-Queens
    assert TaskConfig(name="sudoku", size=4).resolved().mode == "generate"
    sudoku9 = TaskConfig(name="sudoku", size=9).resolved()
    assert (sudoku9.mode, sudoku9.min_effort) == ("unique", 1)
    col = TaskConfig(name="coloring", size=10).resolved()
    assert (col.num_train, col.num_test) == (13465, 192)  # the paper's sizes
    assert TaskConfig(name="coloring", size=10, num_test=5).resolved().num_test == 5


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown TaskConfig fields \\['colour'\\]"):
        from_dict(TaskConfig, {"colour": 1})


def test_one_list_of_task_sizes():
    from gram_ppl.config import TASK_SIZES
    from gram_ppl.tasks import coloring, nqueens, sudoku

    assert nqueens.SIZES is TASK_SIZES["nqueens"] and coloring.SIZES is TASK_SIZES["coloring"]
    assert set(sudoku.BOXES) == set(TASK_SIZES["sudoku"])


def test_priors_are_settled_by_one_rule():
    import dataclasses

    from gram_ppl.config import GramConfig, PriorConfig, with_priors

    block, other = PriorConfig(scale=0.3), PriorConfig(scale=0.2)
    assert with_priors(GramConfig(), block).priors == block  # none recorded: the block's
    kept = dataclasses.replace(GramConfig(), priors=other)
    assert with_priors(kept, block) is kept  # recorded ones are kept


def test_data_build_takes_unset_fields_from_task_config(tmp_path):
    from gram_ppl.cli import main
    from gram_ppl.config import TaskConfig
    from gram_ppl.data import load_dataset

    assert main(["data", "build", "--task", "coloring", "--size", "4", "--num-train", "5", "--num-test", "2",
                 "--out", str(tmp_path / "d")]) == 0  # fmt: skip
    cfg = load_dataset(tmp_path / "d").config
    default = TaskConfig(name="coloring", size=4)
    assert (cfg.edge_prob, cfg.test_fraction, cfg.max_solutions, cfg.split) == (
        default.edge_prob, default.test_fraction, default.max_solutions, default.resolved().split)  # fmt: skip


def test_paper_presets_and_the_preset_flag(tmp_path):
    from gram_ppl.cli import build_parser
    from gram_ppl.cli.runs import fit_config
    from gram_ppl.presets import PRESETS, preset_config

    betas = {"paper-nqueens8": 0.07, "paper-nqueens10": 0.045, "paper-coloring8": 0.5, "paper-coloring10": 0.45,
             "paper-sudoku": 0.1, "paper-sudoku-generate": 0.05, "paper-arc1": 0.04, "paper-arc2": 0.1}  # Table B.2  # fmt: skip
    assert set(PRESETS) == set(betas)
    for name, beta in betas.items():
        cfg = preset_config(name)
        assert (cfg.net.dim, cfg.net.prefix_tokens, cfg.fit.K, cfg.fit.T, cfg.fit.n_sup) == (512, 16, 4, 3, 16)
        assert (cfg.fit.beta, cfg.fit.batch_size, cfg.fit.lr, cfg.fit.kl_cap_weight) == (beta, 768, 1e-4, 0.0)
    assert preset_config("paper-sudoku-generate").fit.ema == 0.999 and preset_config("paper-sudoku").fit.ema == 0.9999
    parse = build_parser().parse_args
    cfg = fit_config(parse(["fit", "--preset", "paper-nqueens10", "--set", "fit.batch_size=64", "--out", "r"]))
    assert (cfg.task.size, cfg.fit.batch_size, cfg.fit.n_sup, cfg.priors is not None) == (10, 64, 16, True)
    with pytest.raises(ConfigError, match="new run"):
        fit_config(parse(["fit", "--preset", "paper-nqueens8", "--resume", "--out", str(tmp_path)]))
    with pytest.raises(ConfigError, match="preset"):
        preset_config("paper-mnist")


def test_the_task_lists_agree_with_the_one_registry():
    """TASK_NAMES, TASK_SIZES, gram_ppl.tasks.TASKS, the CLI's --task choices and the per-task
    default counts all come from config.TASK_REGISTRY: a new task is one module and one line."""
    from gram_ppl.cli import build_parser
    from gram_ppl.config import DEFAULT_COUNTS, TASK_NAMES, TASK_REGISTRY, TASK_SIZES
    from gram_ppl.tasks import TASKS

    assert tuple(TASKS) == TASK_NAMES == tuple(TASK_REGISTRY) and set(TASK_SIZES) == set(TASK_NAMES)
    for name, cls in TASKS.items():
        assert cls.name == name, (name, cls)
        for size in sorted({TASK_SIZES[name][0], TASK_SIZES[name][-1]}):
            task = cls(size)
            assert task.size == size and task.relations().shape == (task.seq_len, task.seq_len)
    assert {task for task, _ in DEFAULT_COUNTS} <= {n.removesuffix("_rows") for n in TASK_NAMES}
    fit = next(a for a in build_parser()._subparsers._group_actions[0].choices["fit"]._actions if a.dest == "task")
    assert tuple(fit.choices) == TASK_NAMES


def test_the_repair_tables_name_the_tasks_that_repair():
    """REPAIRABLE lists exactly the tasks that override Task.repair, and REPAIR_BY_DEFAULT only
    those, at sizes they accept (the two small tables are kept by hand: task_defaults cannot import
    the task classes)."""
    from gram_ppl.config import REPAIR_BY_DEFAULT, REPAIRABLE, TASK_SIZES
    from gram_ppl.tasks import TASKS
    from gram_ppl.tasks.base import Task

    assert set(REPAIRABLE) == {name for name, cls in TASKS.items() if cls.repair is not Task.repair}
    for name, sizes in REPAIR_BY_DEFAULT.items():
        assert name in REPAIRABLE and set(sizes) <= set(TASK_SIZES[name]), (name, sizes)


def test_the_repair_target_needs_a_repairing_task_and_is_anchored():
    """prior_path_target="repair": refused for a task without Task.repair and with the anchor
    turned off; anchored wherever it is asked for, also for puzzles (whose default is unanchored)."""
    from gram_ppl.config import FitConfig, GramConfig, prior_path

    fit = FitConfig(prior_path_weight=1.0, prior_path_target="repair")
    with pytest.raises(ConfigError, match="needs a task whose solver repairs a board \\(sudoku\\), not nqueens"):
        GramConfig(task=TaskConfig(name="nqueens", size=6), fit=fit)
    with pytest.raises(ConfigError, match="is anchored"):
        GramConfig(task=TaskConfig(name="sudoku", size=4), fit=dataclasses.replace(fit, prior_path_anchor=False))
    gen6 = TaskConfig(name="sudoku", size=6, mode="generate")  # "repair" by default there: also checked
    with pytest.raises(ConfigError, match="name another target, e.g. fit.prior_path_target='train'"):
        GramConfig(task=gen6, fit=FitConfig(prior_path_anchor=False))
    assert not prior_path(
        GramConfig(task=gen6, fit=FitConfig(prior_path_anchor=False, prior_path_target="train"))
    ).anchor
    for mode in ("generate", "unique"):
        rule = prior_path(GramConfig(task=TaskConfig(name="sudoku", size=4, mode=mode), fit=fit))
        assert rule == (1.0, "repair", True)
    assert not prior_path(GramConfig(task=TaskConfig(name="sudoku", size=4, mode="unique"))).anchor


@pytest.mark.parametrize(
    "task",
    [TaskConfig(name="sudoku", size=4), TaskConfig(name="sudoku", size=6, mode="generate"), TaskConfig(name="sudoku", size=9),
     TaskConfig(name="nqueens", size=8), TaskConfig(name="digits", size=8)],
)  # fmt: skip
@pytest.mark.parametrize("variant", ["gram", "deterministic"])
def test_resolved_writes_out_the_rules_in_force_and_unresolved_takes_them_back(task, variant):
    from gram_ppl import config

    asked = GramConfig(task=task, fit=FitConfig(variant=variant))
    stored = config.resolved(asked)
    assert all(getattr(getattr(stored, part), k) is not None for part, k in config.RULE_FIELDS)
    hard9 = (task.name, task.size, task.resolved().mode) == ("sudoku", 9, "unique")  # the MLP mixer's defaults
    mlp = hard9 or (task.name, task.size) in (("nqueens", 8), ("digits", 8))
    assert stored.net.mixer == ("mlp" if mlp else "attention")
    assert stored.net.relation_bias == (task.name == "sudoku" and not hard9)
    rule = config.prior_path(asked)
    assert (stored.fit.prior_path_weight, stored.fit.prior_path_target, stored.fit.prior_path_anchor) == tuple(rule)
    assert config.sample_depth(stored) == config.sample_depth(asked)
    assert (config.keeps_best(stored), config.augments(stored)) == (config.keeps_best(asked), config.augments(asked))
    assert config.resolved(stored) == stored
    assert config.unresolved(stored) == dataclasses.replace(asked, task=stored.task)  # defaults give every rule back
    explicit = dataclasses.replace(
        stored, fit=dataclasses.replace(stored.fit, sample_depth=stored.fit.sample_depth + 1)
    )
    assert config.unresolved(explicit).fit.sample_depth == stored.fit.sample_depth + 1  # not a default: kept
