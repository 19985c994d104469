"""cifar.data's error messages and fallbacks, exactly: what a user reads when a batch is missing or
broken, the class names from batches.meta, and the split's bounds (mutants test_data.py let live)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cifar import CLASSES
from cifar.data import DataError, load_cifar10, load_test_split, make_splits, split_indices
from devkit.fake_cifar import BATCH_FOLDER


def rows(n: int) -> np.ndarray:
    return np.zeros((n, 3072), dtype=np.uint8)


def test_a_missing_batch_names_itself_and_the_folder_to_put_the_data_in(tmp_path):
    with pytest.raises(DataError) as e:
        load_test_split(tmp_path)
    message = str(e.value)
    assert f"{tmp_path / BATCH_FOLDER / 'test_batch'} is missing" in message
    assert f"into {tmp_path})" in message and f"where PATH holds {BATCH_FOLDER}/" in message


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch"])
def test_a_corrupt_batch_names_the_error_and_how_to_recover(cifar_copy, name):
    path = cifar_copy / BATCH_FOLDER / name
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError) as e:
        load_cifar10(cifar_copy)
    message = str(e.value)
    assert f"CIFAR-10 batch {path} is truncated or corrupt (EOFError: Ran out of input)." in message
    assert f"Delete {path.parent} and get the data again." in message and f"into {cifar_copy})" in message


def test_a_batch_that_is_not_a_dict_says_what_it_holds(cifar_copy):
    path = cifar_copy / BATCH_FOLDER / "test_batch"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match=r"is not a CIFAR-10 batch: it holds a list, not a dict\.$") as e:
        load_test_split(cifar_copy)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("data, labels, words", [
    (np.zeros((2, 3072, 1), dtype=np.uint8), [0, 1], r"'data' is uint8 \(2, 3072, 1\), expected uint8 \(N, 3072\)"),
    (rows(2), [0, 1, 2], r": 2 images but 3 labels; the file is corrupt\."),
])
def test_a_malformed_test_batch_names_the_file_and_the_problem(cifar_copy, data, labels, words):
    path = cifar_copy / BATCH_FOLDER / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": labels}, f, protocol=2)
    with pytest.raises(DataError, match=words) as e:
        load_test_split(cifar_copy)
    assert str(e.value).startswith(f"{path}: ")


def test_fine_labels_are_read_when_labels_are_absent(cifar_copy):
    path = cifar_copy / BATCH_FOLDER / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": rows(3), "fine_labels": [7, 8, 9]}, f, protocol=2)
    _, labels, _ = load_test_split(cifar_copy)
    assert labels.tolist() == [7, 8, 9] and labels.dtype == np.int64


def test_class_names_come_from_batches_meta(cifar_copy):
    meta = cifar_copy / BATCH_FOLDER / "batches.meta"
    names = [f"class{i}" for i in range(10)]
    meta.write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    assert load_cifar10(cifar_copy).classes == tuple(names)


@pytest.mark.parametrize("meta", [None, {"label_names": ["a", "b"]}, {"label_names": []}, {}])
def test_without_ten_names_in_batches_meta_the_classes_are_cifars(cifar_copy, meta):
    path = cifar_copy / BATCH_FOLDER / "batches.meta"
    if meta is None:
        path.unlink()
    else:
        path.write_bytes(pickle.dumps(meta, protocol=2))
    assert load_cifar10(cifar_copy).classes == CLASSES


def test_a_broken_batches_meta_names_itself(cifar_copy):
    path = cifar_copy / BATCH_FOLDER / "batches.meta"
    path.write_bytes(b"\x80\x02")
    with pytest.raises(DataError, match="batches.meta is truncated or corrupt") as e:
        load_cifar10(cifar_copy)
    assert f"into {cifar_copy})" in str(e.value)


def test_split_bounds_and_message():
    train, val = split_indices(10, 1)
    assert len(val) == 1 and len(train) == 9
    with pytest.raises(ValueError, match=r"^val_size must be between 1 and 9, got 10$"):
        split_indices(10, 10)


def test_make_splits_defaults_to_the_reports_5000_and_seed_42(fake_data):
    with pytest.raises(ValueError, match="between 1 and 399, got 5000"):
        make_splits(fake_data)
    a, b = make_splits(fake_data, 80), make_splits(fake_data, 80, 42)
    assert a.split_seed == 42 and np.array_equal(a.val_y.numpy(), b.val_y.numpy())
    assert np.array_equal(a.val_x.numpy(), b.val_x.numpy())


def test_a_pickle_that_would_run_code_is_refused_by_name(cifar_copy):
    import os

    class Evil:
        def __reduce__(self):
            return os.system, ("true",)

    path = cifar_copy / BATCH_FOLDER / "test_batch"
    path.write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"\(UnpicklingError: refusing to load posix\.system: not part of a CIFAR batch\)"):
        load_test_split(cifar_copy)


def test_splits_carry_the_test_set_classes_and_source(fake_data):
    s = make_splits(fake_data, 80)
    assert s.test_y.tolist() == fake_data.test_labels.tolist() and s.classes == fake_data.classes
    assert s.source == fake_data.source


def test_describe_source_tells_the_official_archive_from_a_copy(cifar_root, monkeypatch):
    import hashlib

    import cifar.data as data_mod

    path = cifar_root / BATCH_FOLDER / "test_batch"
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    assert data_mod.describe_source(path) == {
        "name": "CIFAR-10 (not the official archive: its test batch differs)", "official": False, "test_md5": md5}
    monkeypatch.setitem(data_mod.KNOWN_COPIES, md5, "a known copy")
    assert data_mod.describe_source(path)["name"] == "a known copy"
    monkeypatch.setattr(data_mod, "OFFICIAL_TEST_MD5", md5)
    assert data_mod.describe_source(path) == {"name": "CIFAR-10 (official archive)", "official": True, "test_md5": md5}
