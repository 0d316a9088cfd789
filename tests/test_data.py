import json

import numpy as np
import pytest

from gram_ppl import DatasetError, TaskConfig, build_dataset, load_dataset, save_dataset

SMALL = [
    TaskConfig(name="nqueens", size=6),
    TaskConfig(name="sudoku", size=4),
    TaskConfig(name="sudoku", size=6, num_train=8, num_test=4),
    TaskConfig(name="coloring", size=8, num_train=40, num_test=10),
]


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("cfg", SMALL, ids=lambda c: f"{c.name}{c.size}")
def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(cfg, tmp_path):
    a = save_dataset(build_dataset(cfg), tmp_path / "a")
    b = save_dataset(build_dataset(cfg), tmp_path / "b")
    assert files(a) == files(b)
    c = save_dataset(build_dataset(TaskConfig(**{**cfg.__dict__, "seed": 1})), tmp_path / "c")
    assert files(a)["test.npz"] != files(c)["test.npz"]


@pytest.mark.parametrize("cfg", SMALL, ids=lambda c: f"{c.name}{c.size}")
def test_round_trip_and_manifest(cfg, tmp_path):
    ds = build_dataset(cfg)
    folder = save_dataset(ds, tmp_path / "ds")
    back = load_dataset(folder)
    assert back.config == ds.config == cfg.resolved()
    for name in ("train", "test"):
        for k, v in getattr(ds, name).arrays().items():
            np.testing.assert_array_equal(getattr(back, name).arrays()[k], v)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"train": len(ds.train), "test": len(ds.test)}
    assert manifest["test_num_solutions"] == ds.test.num_solutions.tolist()
    assert set(manifest["files"]) == {"train.npz", "test.npz"}
    assert set(manifest["arrays"]) == {f"{s}/{k}" for s in ("train", "test") for k in ("x", "y", "num_solutions")}
    assert manifest["task"] == cfg.name and manifest["seed"] == cfg.seed
    np.load(folder / "train.npz")  # plain numpy can read the arrays too


@pytest.fixture
def saved(tmp_path):
    return save_dataset(build_dataset(SMALL[0]), tmp_path / "ds")


def test_a_flipped_byte_is_refused_naming_the_file(saved):
    path = saved / "train.npz"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="train.npz: checksum mismatch"):
        load_dataset(saved)


def test_a_truncated_file_is_refused(saved):
    path = saved / "test.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="test.npz: checksum mismatch"):
        load_dataset(saved)


def test_a_missing_file_or_manifest_is_refused(saved):
    (saved / "test.npz").unlink()
    with pytest.raises(DatasetError, match="test.npz: missing"):
        load_dataset(saved)
    (saved / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="manifest.json: missing"):
        load_dataset(saved)


def test_a_manifest_edited_to_match_a_forged_file_is_still_checked_per_array(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["arrays"]["train/y"]["sha256"] = "0" * 64
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="train.npz: array 'y' does not match"):
        load_dataset(saved)


@pytest.mark.parametrize("text, reason", [("{", "not valid JSON"), ('{"format": 99}', "unknown data set format")])
def test_a_broken_manifest_is_refused(saved, text, reason):
    (saved / "manifest.json").write_text(text)
    with pytest.raises(DatasetError, match=reason):
        load_dataset(saved)


def test_an_existing_folder_is_kept_unless_overwrite(saved):
    ds = build_dataset(SMALL[1])
    before = files(saved)
    with pytest.raises(FileExistsError, match="--force"):
        save_dataset(ds, saved)
    assert files(saved) == before
    save_dataset(ds, saved, overwrite=True)
    assert load_dataset(saved).config.name == "sudoku"
    assert [p.name for p in saved.parent.iterdir()] == ["ds"]  # no temporary folder left behind


def test_an_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    import gram_ppl.data as data

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_sha256_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(build_dataset(SMALL[1]), tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []
