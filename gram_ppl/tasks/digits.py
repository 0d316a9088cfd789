"""Binarised 8x8 handwritten digits: the paper's image-generation experiment (binarised MNIST),
offline, on the 1,797 digits scikit-learn ships (`sklearn.datasets.load_digits`, no download).

Tokens: 64 pixels row-major, 0 pad; y: 1 pixel off, 2 pixel on (a pixel is on when its
grey level, 0..16 in the data, is at least THRESHOLD = 8). x, by mode (TaskConfig.mode):
- "generate" (default): unconditional generation p(y), x the all-blank input (token 1 everywhere);
- "conditional": class-conditional p(y | label), x the label token 2 + label at every position.

There is no checker: every well-formed image is "valid" (`conflicts` counts tokens that are not
pixels) and an image has no exact solution set (num_solutions is -1, so the per-example KL
ceiling does not apply). Quality is measured by `image_metrics` instead: a classifier fitted on
real digits (an SVM, ≥ 95% accurate on the held-out ones) scores how recognisable samples are
and how evenly they spread over the classes, a Fréchet distance between its features of samples
and of held-out digits says how far the sample distribution is from real digits, and Hamming
distances to the training images count copies against new images.

Split (seed-dependent, stratified by class): `num_train` images train the generator (default
1,200), the other `num_test` (597) are held out: their log-likelihood is the held-out score,
and they score the judging classifier (fitted on the training images). scikit-learn is
imported only to load the images and fit the classifier.
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
    """The judge of generated digits: an RBF support-vector machine (C = 3) fitted on real digits
    `images` (M, 64) with their `labels`, its probabilities calibrated by 5-fold Platt scaling;
    `accuracy` is its accuracy on the held-out real digits (`test_images`, `test_labels`), ≥ 95%
    on the default split. Its features (the 10 one-vs-rest decision values) give a Fréchet
    distance between samples and the held-out digits (`frechet`, the paper's FID in miniature),
    with two reference values: `reference_real`, the training digits themselves (what a generator
    that reproduced its training set would score), and `reference_noise`, uniform random images
    (as many as held-out digits)."""

    def __init__(self, images, labels, test_images, test_labels, seed: int = 0):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        self.model = CalibratedClassifierCV(SVC(C=3.0, gamma="scale"), ensemble=False, cv=5)
        self.model.fit(_pixels(images), np.asarray(labels))
        self.accuracy = float((self.model.predict(_pixels(test_images)) == np.asarray(test_labels)).mean())
        self._train_on = _pixels(images)  # (T, 64)
        # how far real digits lie from the nearest training digit: 99% of the held-out ones within this
        self.max_distance = float(np.percentile(self.nearest(test_images), 99))
        real = self.features(test_images)  # (T, 10)
        self.mean, self.cov = real.mean(0), np.cov(real, rowvar=False)
        self.reference_real = self.frechet(images)  # what reproducing the training digits would score
        noise = np.random.default_rng(seed).integers(OFF, ON + 1, (len(real), 64))
        self.reference_noise = self.frechet(noise)

    def proba(self, images: np.ndarray) -> np.ndarray:
        """(M, 64) tokens -> (M, 10) class probabilities."""
        return self.model.predict_proba(_pixels(images))

    def nearest(self, images: np.ndarray) -> np.ndarray:
        """Hamming distance (pixels) of each image (M, 64) to the nearest digit the judge was fitted on."""
        return nearest_hamming(images, self._train_on)

    def recognisable(self, images: np.ndarray) -> np.ndarray:
        """(M,) bool: the judge gives one class probability >= CONFIDENT (0.8), and the image is no
        farther from the nearest real training digit than 99% of the held-out real digits are (an
        RBF SVM, like most classifiers, is confident far from its data: uniform noise would pass
        the first test a third of the time)."""
        images = np.asarray(images).reshape(-1, 64)
        return (self.proba(images).max(1) >= CONFIDENT) & (self.nearest(images) <= self.max_distance)

    def features(self, images: np.ndarray) -> np.ndarray:
        """(M, 64) tokens -> (M, 10) the SVM's one-vs-rest decision values."""
        return self.model.calibrated_classifiers_[0].estimator.decision_function(_pixels(images))

    def frechet(self, images: np.ndarray) -> float:
        """Fréchet distance between the judge's features of `images` (M, 64) and of the held-out
        real digits: ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) (lower is closer to real digits)."""
        f = self.features(np.asarray(images).reshape(-1, 64))
        return _frechet(f.mean(0), np.cov(f, rowvar=False), self.mean, self.cov)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (M, k) and b (N, k)."""
    return _frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _frechet(m1, c1, m2, c2) -> float:
    """tr((Σ₁Σ₂)^½) as Σ √λ of the symmetric PSD Σ₁^½ Σ₂ Σ₁^½ (defined for singular covariances,
    e.g. identical samples, where a general matrix square root is not)."""
    c1, c2 = np.atleast_2d(c1), np.atleast_2d(c2)
    w, v = np.linalg.eigh(c1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ c2 @ root1), 0, None)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)


def judge_for(train_images: np.ndarray, seed: int = 0) -> Judge:
    """The judge of a run: fitted on the real digits its generator trained on, scored (accuracy,
    Fréchet reference) on every real digit it did not (the held-out split). A sample that copies
    a training image is therefore recognised: copies are reported beside recognisability."""
    images, labels = load_images()
    seen = {r.tobytes() for r in np.asarray(train_images, dtype=np.uint8)}
    held = np.array([r.tobytes() not in seen for r in images])
    return Judge(images[~held], labels[~held], images[held], labels[held], seed)


def nearest_hamming(images: np.ndarray, reference_on: np.ndarray) -> np.ndarray:
    """Hamming distance (pixels) of each image (M, 64) to the nearest of the reference images,
    given as 0/1 pixels (T, 64): (M,)."""
    on = _pixels(np.asarray(images).reshape(-1, 64))  # (M, 64)
    return (on @ (1 - reference_on).T + (1 - on) @ reference_on.T).min(1)  # (M, T) distances, nearest


def _pixels(images: np.ndarray) -> np.ndarray:
    return (np.asarray(images) == ON).astype(np.float64)  # (M, 64) 0/1


def judge_run_samples(data, samples: np.ndarray, labels=None) -> dict[str, float]:
    """image_metrics of a run's samples (..., 64), judged by judge_for(its training images)."""
    return image_metrics(samples, data.train.y, judge_for(data.train.y), labels)


def describe(m: dict) -> str:
    """One line of image_metrics for a person."""
    return (f"{m['recognisable']:.1%} recognisable, Fréchet distance {m['frechet']:.2f} (real digits "
            f"{m['frechet_real']:.2f}, noise {m['frechet_noise']:.2f}), class entropy {m['class_entropy']:.2f}, "
            f"{m['copies']:.1%} copies of training images, {m['distinct']:.1%} distinct")  # fmt: skip


def image_metrics(samples: np.ndarray, train_images: np.ndarray, judge: Judge, labels=None) -> dict[str, float]:
    """Quality of generated images (M, 64) without a checker:
    - recognisable: share the judge assigns one class with probability >= CONFIDENT (0.8) and
      that lie within the real digits' distance of the training digits (`Judge.recognisable`);
      confidence: mean of the judge's largest class probability;
    - class_entropy: entropy of the judge's predicted classes over the samples / ln 10 (1: the
      10 classes equally often; 0: one class); classes: classes predicted for >= 5% of samples;
    - label_accuracy (with `labels`, class-conditional runs): share predicted as their label;
    - copies: share identical to a training image; nn_distance: mean Hamming distance (pixels)
      to the nearest training image; distinct: distinct images / samples;
    - frechet: Fréchet distance of the judge's features to the held-out real digits', with
      frechet_real (the training digits) and frechet_noise (uniform noise) as references.
    """
    samples = np.asarray(samples).reshape(-1, 64)
    p = judge.proba(samples)  # (M, 10)
    pred = p.argmax(1)
    share = np.bincount(pred, minlength=10) / len(pred)
    nz = share[share > 0]
    nearest = nearest_hamming(samples, _pixels(train_images))  # (M,)
    out = {
        "samples": int(len(samples)),
        "recognisable": float(judge.recognisable(samples).mean()),
        "confidence": float(p.max(1).mean()),
        "class_entropy": float(max(0.0, -(nz * np.log(nz)).sum() / np.log(10))),
        "classes": int((share >= 0.05).sum()),
        "copies": float((nearest == 0).mean()),
        "nn_distance": float(nearest.mean()),
        "distinct": float(len({s.tobytes() for s in samples.astype(np.uint8)}) / len(samples)),
        "judge_accuracy": judge.accuracy,
        "frechet": judge.frechet(samples),  # against the held-out real digits; references beside it
        "frechet_real": judge.reference_real,
        "frechet_noise": judge.reference_noise,
    }
    if labels is not None:
        out["label_accuracy"] = float((pred == np.asarray(labels).reshape(-1)).mean())
    return out
