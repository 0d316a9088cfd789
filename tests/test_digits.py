"""The digits task (scikit-learn's 8x8 images, binarised): the builder, the text format and the
judge that scores samples without a checker."""

import json

import numpy as np
import pytest
from tiny import gram_in_process as _gram

from gram_ppl import PuzzleError, TaskConfig, build_dataset
from gram_ppl.config import ConfigError
from gram_ppl.tasks import Digits
from gram_ppl.tasks.digits import THRESHOLD, frechet_distance, image_metrics, judge_for, load_images


@pytest.fixture(scope="module")
def data():
    return build_dataset(TaskConfig(name="digits", size=8, mode="conditional"))


@pytest.fixture(scope="module")
def judge(data):
    return judge_for(data.train.y)


def test_images_are_the_shipped_digits_binarised_at_the_threshold():
    from sklearn.datasets import load_digits

    images, labels = load_images()
    d = load_digits()
    assert images.shape == (1797, 64) and set(np.unique(images)) == {1, 2}
    assert ((images == 2) == (d.data >= THRESHOLD)).all() and (labels == d.target).all()


def test_builder_sizes_stratification_and_determinism(data):
    images, labels = load_images()
    assert len(data.train) == 1200 and len(data.test) == 597
    assert (data.train.num_solutions == -1).all()  # no exact solution set: no per-example KL ceiling
    train_lab, test_lab = data.train.x[:, 0] - 2, data.test.x[:, 0] - 2  # conditional: the label token
    assert (data.train.x == data.train.x[:, :1]).all()
    for lab in (train_lab, test_lab):  # each class within 2 images of its share
        expected = np.bincount(labels) * len(lab) / len(labels)
        assert np.abs(np.bincount(lab, minlength=10) - expected).max() <= 2
    again = build_dataset(TaskConfig(name="digits", size=8, mode="conditional"))
    assert (again.train.y == data.train.y).all() and (again.test.y == data.test.y).all()
    other = build_dataset(TaskConfig(name="digits", size=8, seed=1))
    assert not (other.train.y == data.train.y).all() and (other.train.x == 1).all()  # generate: blank input
    # the same 1,797 images, each in one split: as multisets, train + test = all
    rows = sorted(r.tobytes() for r in np.concatenate([data.train.y, data.test.y]))
    assert rows == sorted(r.tobytes() for r in images)


def test_text_format_and_errors():
    task = Digits(8)
    assert task.format_puzzle(task.parse_puzzle("-")) == "-" and task.format_puzzle(task.parse_puzzle("7")) == "7"
    y = np.where(np.arange(64) % 3 == 0, 2, 1).astype(np.uint8)
    assert (task.parse_solution(task.format_solution(y)) == y).all()
    for bad in ("12", "x", ""):
        with pytest.raises(PuzzleError, match="digits input"):
            task.parse_puzzle(bad)
    with pytest.raises(PuzzleError, match="'#'"):
        task.parse_solution("." * 63 + "x")
    with pytest.raises(PuzzleError, match="no exact solution set"):
        task.solutions(task.parse_puzzle("-"))
    assert task.is_valid(task.parse_puzzle("-"), y) and not task.is_valid(task.parse_puzzle("-"), np.zeros(64, int))
    with pytest.raises(ValueError, match="must be 8"):
        Digits(16)
    for bad, match in (({"mode": "unique"}, "mode must be one of"), ({"split": "orbit"}, "does not apply")):
        with pytest.raises(ConfigError, match=match):
            TaskConfig(name="digits", size=8, **bad)


def test_real_digits_score_as_recognisable_and_noise_does_not(data, judge):
    """The judge is fitted on the generation training digits and is >= 95% accurate on the
    held-out ones; real digits are recognisable, of their own label, spread over all 10 classes
    (the training ones copies by definition), close to the held-out digits in the Fréchet
    distance where noise is far."""
    real = image_metrics(data.train.y, data.train.y, judge, labels=data.train.x[:, 0] - 2)
    assert judge.accuracy >= 0.95 and real["label_accuracy"] > 0.95
    assert real["recognisable"] > 0.5 and real["class_entropy"] > 0.97 and real["classes"] == 10
    assert real["copies"] == 1.0 and real["nn_distance"] == 0.0
    held = image_metrics(data.test.y, data.train.y, judge)
    assert held["copies"] < 0.1 and held["nn_distance"] > 2  # real but new images are not copies
    assert held["recognisable"] > 0.8
    noise = image_metrics(np.random.default_rng(0).integers(1, 3, (400, 64)), data.train.y, judge)
    assert noise["recognisable"] < 0.3 and noise["nn_distance"] > 15
    assert real["frechet"] == pytest.approx(real["frechet_real"], rel=0.05)  # the reference: the training digits
    assert held["frechet"] < 1.0 and real["frechet"] < 1.0 and noise["frechet"] > 20
    assert noise["frechet_noise"] > 20  # the reference: uniform noise, far from the digits
    assert frechet_distance(np.eye(3), np.eye(3)) == pytest.approx(0.0, abs=1e-9)
    shifted = frechet_distance(np.eye(3) + 2.0, np.eye(3))
    assert shifted == pytest.approx(12.0, abs=1e-6)  # ‖μ₁ − μ₂‖² = 3 · 2², equal covariances
    assert frechet_distance(np.ones((5, 3)), np.ones((4, 3))) == pytest.approx(0.0, abs=1e-12)  # singular: defined
    one = image_metrics(np.repeat(data.train.y[:1], 50, axis=0), data.train.y, judge)
    assert one["class_entropy"] == 0.0 and one["classes"] == 1 and one["distinct"] == 1 / 50


def test_fit_evaluate_and_generate_digits(tmp_path):
    run = tmp_path / "run"
    r = _gram("fit", "--task", "digits", "--size", "8", "--steps", "2", "--set", "net.dim=16", "--set",
              "net.layers=1", "--quiet", "--out", str(run))  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _gram("evaluate", str(run), "--num-samples", "3", "--puzzles", "5")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["samples"] == 15 and 0 <= m["recognisable"] <= 1 and "coverage" not in m
    r = _gram("generate", str(run), "--num", "4", "--out", str(tmp_path / "g.txt"))
    assert r.returncode == 0 and "recognisable" in r.stderr, r.stderr
    assert len((tmp_path / "g.txt").read_text().split()) == 4
    rep = tmp_path / "report"  # no solution set: the judge's scores, no coverage or solution plots
    r = _gram("diagnose", str(run), "--num-puzzles", "2", "--num-samples", "4", "--out", str(rep))
    assert r.returncode == 0 and "recognisable" in r.stderr, r.stderr
    summary = (rep / "summary.md").read_text()
    assert "judged by a classifier" in summary and "| 0 | - |" in summary and "prior well-formed" in summary
    assert {"gallery.png", "fan.png", "entropy.png", "trajectories.nc"} <= {f.name for f in rep.iterdir()}
    assert not (rep / "solutions.png").exists() and not (rep / "coverage.png").exists()
    (tmp_path / "p.txt").write_text("-\n")
    r = _gram("diagnose", str(run), "--puzzles", str(tmp_path / "p.txt"), "--out", str(tmp_path / "r2"))
    assert r.returncode == 2 and "leave out --puzzles" in r.stderr and not (tmp_path / "r2").exists()
    r = _gram("diagnose", str(run), "--baseline", str(run), "--out", str(tmp_path / "r3"))
    assert r.returncode == 2 and "exact solutions" in r.stderr and not (tmp_path / "r3").exists()


def test_image_gallery_draws_samples_beside_real_digits(data, judge):
    from gram_ppl import plots

    real = data.test.y[:20]
    fig = plots.image_gallery({"samples": data.train.y[:13], "real": real},
                              captions={"real": judge.proba(real).argmax(1).tolist()})  # fmt: skip
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert len(fig.subfigs) == 2 and sum(len(s.axes) for s in fig.subfigs) == 20 + 20  # 2 rows of 10 each
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_gallery({"samples": data.train.y[:0]})


def test_conditional_digits_sample_for_labels_and_refuse_generate(tmp_path):
    run = tmp_path / "run"
    r = _gram("fit", "--task", "digits", "--size", "8", "--set", "task.mode=conditional", "--steps", "1", "--set",
              "net.dim=16", "--set", "net.layers=1", "--quiet", "--out", str(run))  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _gram("generate", str(run), "--num", "2", "--out", str(tmp_path / "g.txt"))
    assert r.returncode == 2 and "gram sample" in r.stderr and not (tmp_path / "g.txt").exists()
    from gram_ppl.inference.run import load_run
    from gram_ppl.inference.sampling import generate

    with pytest.raises(ConfigError, match="class-conditional"):  # the Python API refuses it as well
        generate(load_run(run), 2)
    (tmp_path / "labels.txt").write_text("3\n7\n")
    r = _gram("sample", str(run), "--puzzles", str(tmp_path / "labels.txt"), "--num-samples", "2", "--out",
              str(tmp_path / "s.jsonl"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [row["puzzle"] for row in rows] == ["3", "7"] and all(len(s) == 64 for row in rows for s in row["samples"])
    r = _gram("evaluate", str(run), "--num-samples", "2", "--puzzles", "4")
    assert r.returncode == 0 and "label_accuracy" in json.loads(r.stdout), r.stderr
