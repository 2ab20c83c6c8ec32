"""Dataset scanning and splitting: layouts, stratified seeded splits, clear errors."""

from __future__ import annotations

import pytest

from edgetl.errors import DataError
from edgetl.train.data import load_dataset

from conftest import make_dataset


def test_flat_layout_stratified_and_seeded(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green", "blue"), per_class=10, size=16)
    a = load_dataset(data, val_split=0.3, seed=3)
    b = load_dataset(data, val_split=0.3, seed=3)
    c = load_dataset(data, val_split=0.3, seed=4)
    assert a.layout == "flat" and a.classes == ["blue", "green", "red"]
    assert a.counts("val") == {"blue": 3, "green": 3, "red": 3}
    assert a.counts("train") == {"blue": 7, "green": 7, "red": 7}
    assert a.train == b.train and a.val == b.val
    assert a.val != c.val
    assert not set(p for p, _ in a.train) & set(p for p, _ in a.val)
    for path, label in a.train + a.val:
        assert path.parent.name == a.classes[label]


def test_every_class_keeps_a_val_image(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=2, size=16)
    ds = load_dataset(data, val_split=0.05, seed=0)
    assert ds.counts("val") == {"green": 1, "red": 1}
    assert ds.counts("train") == {"green": 1, "red": 1}


def test_split_layout_used_as_given(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=5, val_per_class=3, size=16, layout="split")
    ds = load_dataset(data, val_split=0.5, seed=0)
    assert ds.layout == "split"
    assert ds.counts("train") == {"green": 5, "red": 5} and ds.counts("val") == {"green": 3, "red": 3}
    assert ds.relative("val")[0][0].startswith("val/green/")


def test_validation_folder_name_is_accepted(tmp_path):
    data = make_dataset(tmp_path, classes=("red", "green"), per_class=3, size=16, layout="split")
    (data / "val").rename(data / "validation")
    assert load_dataset(data).layout == "split"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "not found"),
        ("empty", "no class folders"),
        ("empty_class", "no images"),
        ("single", "single class"),
        ("different", "different classes"),
        ("no_split", "val_split is 0"),
    ],
)
def test_clear_errors(tmp_path, case, message):
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "empty":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "empty_class":
        path = make_dataset(tmp_path, per_class=2, size=16)
        (path / "blue").mkdir()
    elif case == "single":
        path = make_dataset(tmp_path, classes=("red",), per_class=3, size=16)
    elif case == "different":
        path = make_dataset(tmp_path, per_class=2, size=16, layout="split")
        (path / "val" / "green").rename(path / "val" / "blue")
    else:
        path = make_dataset(tmp_path, per_class=2, size=16)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path, val_split=0.0 if case == "no_split" else 0.2)
    assert "\n" not in str(info.value)
