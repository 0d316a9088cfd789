"""Binarised 8x8 handwritten digits: the paper's image-generation experiment (binarised MNIST),
offline, on the 1,797 digits scikit-learn ships (`sklearn.datasets.load_digits`, no download).

Tokens: 64 pixels row-major, 0 pad; y: 1 pixel off, 2 pixel on (a pixel is on when its
grey level, 0..16 in the data, is at least THRESHOLD = 8). x, by mode (TaskConfig.mode):
- "generate" (default): unconditional generation p(y), x the all-blank input (token 1 everywhere);
- "conditional": class-conditional p(y | label), x the label token 2 + label at every position.

There is no checker: every well-formed image is "valid" (`conflicts` counts tokens that are not
pixels) and an image has no exact solution set (num_solutions is -1, so the per-example KL
ceiling does not apply). Quality is measured by `image_metrics` instead: a classifier fitted on
real digits held out from generation training (the test split) scores how recognisable samples
are and how evenly they spread over the classes, and Hamming distances to the training images
count copies against new images.

Split (seed-dependent, stratified by class): `num_train` images train the generator (default
1,200), the other `num_test` (597) are held out: their log-likelihood is the held-out score,
and they fit the judging classifier. scikit-learn is imported only to load the images and to
fit the classifier.
"""

from __future__ import annotations

import numpy as np

from gram_ppl.tasks.base import PuzzleError, Split, Task, parse_grid_line

PAD, BLANK, OFF, ON = 0, 1, 1, 2
LABEL0 = 2  # conditional input: token 2 + label
THRESHOLD = 8  # grey level (0..16) at or above which a pixel is on
CONFIDENT = 0.8  # a sample is "recognisable" when the classifier gives one class at least this
MODES = ("generate", "conditional")


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits binarised: (1797, 64) uint8 tokens (1 off, 2 on) and (1797,) labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("the digits task needs scikit-learn (pip install scikit-learn)") from e
    d = load_digits()
    return np.where(d.data >= THRESHOLD, ON, OFF).astype(np.uint8), d.target.astype(np.int64)


class Digits(Task):
    """8x8 binarised digits; size is the image side (8)."""

    name = "digits"
    checker = False
    unsolvable_reason = "an image has no exact solution set"

    def __init__(self, size: int):
        if size != 8:
            raise ValueError(f"digits size (image side) must be 8, got {size}")
        self.size = 8
        self.x_len = self.y_len = 64
        self.x_vocab, self.y_vocab = LABEL0 + 10, 3

    # ---- constraints: none beyond being an image ---------------------------------------------
    def conflicts(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Tokens of y that are not pixels (every binary image is well formed)."""
        y = np.asarray(y)
        return ((y != OFF) & (y != ON)).sum(-1) + 0 * np.asarray(x)[..., 0]

    def solutions(self, x: np.ndarray, limit: int | None = None) -> np.ndarray:
        raise PuzzleError("digit images have no exact solution set: score samples with Digits.image_metrics")

    def check_givens(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if not ((x == BLANK).all() or (x == x[0]).all() and LABEL0 <= x[0] < LABEL0 + 10):
            raise PuzzleError("a digits input is all blank (generate) or one label token everywhere (conditional)")

    def label(self, x: np.ndarray) -> np.ndarray:
        """(..., 64) inputs -> (...) conditioning label, -1 for the blank (unconditional) input."""
        t = np.asarray(x)[..., 0].astype(np.int64)
        return np.where(t >= LABEL0, t - LABEL0, -1)

    def sample_labels(self, x: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
        """The label each of the samples of shape (N, B) drawn for inputs x (B, 64) was asked
        for, to score with image_metrics; None when the inputs are blank (unconditional)."""
        labels = np.broadcast_to(self.label(x), shape)  # (N, B)
        return labels if labels.min() >= 0 else None

    # ---- text format: the input is "-" (blank) or a label digit; an image is 64 of '.' / '#' ---
    def parse_puzzle(self, text: str) -> np.ndarray:
        t = text.strip()
        if t == "-":
            return np.full(64, BLANK, dtype=np.uint8)
        if len(t) == 1 and t.isdigit():
            return np.full(64, LABEL0 + int(t), dtype=np.uint8)
        raise PuzzleError(f"a digits input is '-' (unconditional) or one digit 0-9 (a label), got {t!r}")

    def format_puzzle(self, x: np.ndarray) -> str:
        lab = int(self.label(x))
        return "-" if lab < 0 else str(lab)

    def parse_solution(self, text: str) -> np.ndarray:
        return parse_grid_line(text, 64, {".": OFF, "#": ON}, "'.' (off) or '#' (on)")

    def format_solution(self, y: np.ndarray) -> str:
        return "".join("#" if t == ON else "." for t in np.asarray(y).tolist())

    # ---- data sets ----------------------------------------------------------------------
    def build_splits(self, cfg, rng: np.random.Generator) -> tuple[Split, Split]:
        images, labels = load_images()
        n_train, n_test = cfg.num_train, cfg.num_test
        if n_train + n_test > len(images) or n_train < 1 or n_test < 10:
            raise ValueError(f"digits: num_train + num_test must be at most {len(images)} and num_test >= 10")
        order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in range(10)])
        stride = np.argsort(np.concatenate([np.arange(k) / k for k in np.bincount(labels)]), kind="stable")
        order = order[stride]  # classes interleaved, so any prefix is stratified
        test, train = order[:n_test], order[n_test : n_test + n_train]

        def split(idx):
            x = np.full((len(idx), 64), BLANK, dtype=np.uint8)
            if cfg.mode == "conditional":
                x[:] = (LABEL0 + labels[idx])[:, None]
            return Split(x, images[idx], np.full(len(idx), -1, dtype=np.int64))

        return split(train), split(test)


class Judge:
    """A multinomial logistic regression on real held-out digits (the test split), which scores
    generated images; `accuracy` is its 5-fold cross-validated accuracy on those digits."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        X = _pixels(images)
        self.model = LogisticRegression(C=0.5, max_iter=2000)
        self.accuracy = float(cross_val_score(self.model, X, labels, cv=5).mean())
        self.model.fit(X, labels)

    def proba(self, images: np.ndarray) -> np.ndarray:
        """(M, 64) tokens -> (M, 10) class probabilities."""
        return self.model.predict_proba(_pixels(images))


def judge_for(train_images: np.ndarray, seed: int = 0) -> Judge:
    """The judge of a run: fitted on every real digit whose binarised image is not among the
    generation training images (the held-out split, and nothing the generator saw)."""
    images, labels = load_images()
    seen = {r.tobytes() for r in np.asarray(train_images, dtype=np.uint8)}
    held = np.array([r.tobytes() not in seen for r in images])
    return Judge(images[held], labels[held], seed)


def _pixels(images: np.ndarray) -> np.ndarray:
    return (np.asarray(images) == ON).astype(np.float64)  # (M, 64) 0/1


def judge_run_samples(data, samples: np.ndarray, labels=None) -> dict[str, float]:
    """image_metrics of a run's samples (..., 64), judged by judge_for(its training images)."""
    return image_metrics(samples, data.train.y, judge_for(data.train.y), labels)


def describe(m: dict) -> str:
    """One line of image_metrics for a person."""
    return (f"{m['recognisable']:.1%} recognisable, class entropy {m['class_entropy']:.2f}, "
            f"{m['copies']:.1%} copies of training images, {m['distinct']:.1%} distinct")  # fmt: skip


def image_metrics(samples: np.ndarray, train_images: np.ndarray, judge: Judge, labels=None) -> dict[str, float]:
    """Quality of generated images (M, 64) without a checker:
    - recognisable: share the judge assigns one class with probability >= CONFIDENT (0.8);
      confidence: mean of the judge's largest class probability;
    - class_entropy: entropy of the judge's predicted classes over the samples / ln 10 (1: the
      10 classes equally often; 0: one class); classes: classes predicted for >= 5% of samples;
    - label_accuracy (with `labels`, class-conditional runs): share predicted as their label;
    - copies: share identical to a training image; nn_distance: mean Hamming distance (pixels)
      to the nearest training image; distinct: distinct images / samples.
    """
    samples = np.asarray(samples).reshape(-1, 64)
    p = judge.proba(samples)  # (M, 10)
    pred = p.argmax(1)
    share = np.bincount(pred, minlength=10) / len(pred)
    nz = share[share > 0]
    on, train_on = _pixels(samples), _pixels(train_images)  # (M, 64), (T, 64)
    dist = on @ (1 - train_on).T + (1 - on) @ train_on.T  # (M, T) Hamming distances
    nearest = dist.min(1)
    out = {
        "samples": int(len(samples)),
        "recognisable": float((p.max(1) >= CONFIDENT).mean()),
        "confidence": float(p.max(1).mean()),
        "class_entropy": float(max(0.0, -(nz * np.log(nz)).sum() / np.log(10))),
        "classes": int((share >= 0.05).sum()),
        "copies": float((nearest == 0).mean()),
        "nn_distance": float(nearest.mean()),
        "distinct": float(len({s.tobytes() for s in samples.astype(np.uint8)}) / len(samples)),
        "judge_accuracy": judge.accuracy,
    }
    if labels is not None:
        out["label_accuracy"] = float((pred == np.asarray(labels).reshape(-1)).mean())
    return out
