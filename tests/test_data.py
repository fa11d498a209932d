"""Tests of numharden.data: IDX reader, loaders, Dataset validation, batching."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from naive_io import idx_bytes, naive_read_idx, write_idx
from numharden import config
from numharden.data import (
    BUNDLED_DIR,
    FASHION_MNIST_CLASSES,
    Dataset,
    load_dataset,
    load_hdf5,
    load_idx_dir,
    load_npz,
    read_idx,
)
from numharden.errors import ConfigError, DTypeError, FormatError, MissingTensorError, ShapeError


def _mnist_dir(tmp_path: Path, n=7, h=5, w=4, gz=True, sep="-", seed=0, split="t10k") -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    y[0] = 9  # fixes the default class count at 10
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"{split}-images{sep}idx3-ubyte{suffix}", x, gz)
    write_idx(tmp_path / f"{split}-labels{sep}idx1-ubyte{suffix}", y, gz)
    return x, y


# -- IDX reader ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_matches_naive(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((3, 4, 2)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", arr, gz)
    got = read_idx(path)
    want = naive_read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, arr)


def test_bundled_fashion_mnist_test_split():
    ds = load_dataset("fashion-mnist")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (10000,) and ds.labels.dtype == np.int64
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.name == "fashion-mnist/test"
    assert ds.source == BUNDLED_DIR
    # published facts of the Fashion-MNIST test split: balanced classes, first labels
    assert Counter(ds.labels.tolist()) == {k: 1000 for k in range(10)}
    assert ds.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    naive_y = naive_read_idx(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(ds.labels, naive_y)
    naive_x = naive_read_idx(BUNDLED_DIR / "t10k-images-idx3-ubyte.gz", max_items=3)
    np.testing.assert_array_equal(ds.images[:3, 0], naive_x)


def test_idx_errors(tmp_path):
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    cases = {
        "short": (good[:3], "4-byte header, found 3 bytes"),
        "magic": (b"\x01" + good[1:], "magic bytes 00 00 at offset 0, found 01 00"),
        "code": (good[:2] + b"\x07" + good[3:], "found 0x07"),
        "ndim0": (good[:3] + b"\x00", "at least 1 dimension, found 0"),
        "header": (good[:10], "16-byte header for 3 dimensions, found 10 bytes"),
        "trunc": (good[:-5], "= 24 payload bytes, found 19 bytes; the file is truncated"),
        "long": (good + b"\x00", "found 25 bytes; the file is longer than its header says"),
        "badgz": (gzip.compress(good)[:-12], "cannot be decompressed"),
    }
    for name, (data, msg) in cases.items():
        path = tmp_path / f"{name}.idx"
        path.write_bytes(data)
        with pytest.raises(FormatError, match="IDX file") as ei:
            read_idx(path)
        assert msg in str(ei.value), (name, str(ei.value))
        assert str(path) in str(ei.value)
    with pytest.raises(FormatError, match="does not exist"):
        read_idx(tmp_path / "nope.idx")


# -- IDX folders and names ---------------------------------------------------------------
@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (False, ".")])
def test_load_idx_dir(tmp_path, gz, sep):
    x, y = _mnist_dir(tmp_path, gz=gz, sep=sep)
    ds = load_dataset(tmp_path)
    np.testing.assert_array_equal(ds.images[:, 0], x)
    np.testing.assert_array_equal(ds.labels, y.astype(np.int64))
    assert ds.images.shape == (7, 1, 5, 4)
    assert ds.class_names == [str(k) for k in range(10)]
    assert ds.name == f"{tmp_path.name}/test" and ds.source == tmp_path


def test_idx_dir_errors(tmp_path):
    _mnist_dir(tmp_path)
    with pytest.raises(MissingTensorError, match="no images file for this split"):
        load_idx_dir(tmp_path, "train")
    with pytest.raises(ConfigError, match="split must be one of"):
        load_dataset(tmp_path, "val")
    with pytest.raises(FormatError, match="not a directory"):
        load_idx_dir(tmp_path / "missing")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((7, 2), np.uint8), gz=True)
    with pytest.raises(FormatError, match=r"expected 1 dimension \(N,\), found 2"):
        load_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((7, 4), np.uint8), gz=True)
    with pytest.raises(FormatError, match=r"expected 3 dimensions \(N, H, W\), found 2"):
        load_idx_dir(tmp_path)


def test_fashion_mnist_train_from_data_dir(tmp_path, monkeypatch):
    x, y = _mnist_dir(tmp_path, split="train")
    monkeypatch.setenv("NUMHARDEN_DATA_DIR", str(tmp_path))
    ds = load_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(ds.images[:, 0], x)
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.name == "fashion-mnist/train"
    # root= overrides the configured folder
    monkeypatch.setenv("NUMHARDEN_DATA_DIR", str(tmp_path / "elsewhere"))
    assert load_dataset("fashion-mnist", "train", root=tmp_path).source == tmp_path
    with pytest.raises(FormatError, match="apt-get install dataset-fashion-mnist") as ei:
        load_dataset("fashion-mnist", "train")
    assert "NUMHARDEN_DATA_DIR" in str(ei.value) and "elsewhere" in str(ei.value)


@pytest.mark.skipif(not Path(str(config.DEFAULTS["data_dir"])).is_dir(),
                    reason="system Fashion-MNIST not installed")
def test_fashion_mnist_train_default_dir(monkeypatch):
    monkeypatch.delenv("NUMHARDEN_DATA_DIR", raising=False)
    ds = load_dataset("fashion-mnist", "train")
    assert ds.images.shape == (60000, 1, 28, 28)
    assert Counter(ds.labels.tolist()) == {k: 6000 for k in range(10)}


def test_mnist_needs_root(tmp_path):
    with pytest.raises(ConfigError, match="root="):
        load_dataset("mnist")
    _mnist_dir(tmp_path)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.name == "mnist/test" and ds.class_names == [str(k) for k in range(10)]
    with pytest.raises(ConfigError, match="root= applies only to"):
        load_dataset(tmp_path, root=tmp_path)


def test_unknown_spec(tmp_path):
    with pytest.raises(FormatError, match="not a known dataset name"):
        load_dataset("cifar-10")
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(FormatError, match="found '.csv'"):
        load_dataset(tmp_path / "d.csv")


# -- HDF5 and NPZ ---------------------------------------------------------------------------
def test_hdf5_and_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float64)  # float64 becomes float32
    y = np.array([0, 1, 2, 2, 1, 0], dtype=np.int32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
        f.attrs["class_names"] = ["a", "b", "c"]
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    for ds in (load_dataset(tmp_path / "d.h5"), load_dataset(tmp_path / "d.npz")):
        assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.images, x.astype(np.float32))
        np.testing.assert_array_equal(ds.labels, y)
        assert ds.class_names == ["a", "b", "c"] and ds.name == "d"


def test_multi_split_files(tmp_path):
    xa = np.zeros((2, 4, 4), np.uint8)
    xb = np.ones((3, 4, 4), np.uint8)
    ya, yb = np.array([0, 1]), np.array([1, 1, 0])
    np.savez(tmp_path / "k.npz", x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    with h5py.File(tmp_path / "k.hdf5", "w") as f:
        f["x_train"], f["y_train"], f["x_test"], f["y_test"] = xa, ya, xb, yb
    for p in (tmp_path / "k.npz", tmp_path / "k.hdf5"):
        assert len(load_dataset(p)) == 3 and load_dataset(p).name == "k/test"
        tr = load_dataset(p, "train")
        assert tr.images.shape == (2, 1, 4, 4) and tr.class_names == ["0", "1"]
    with pytest.raises(ConfigError, match="split must be one of"):
        load_dataset(tmp_path / "k.npz", "validation")


def test_file_errors(tmp_path):
    x, y = np.zeros((2, 4, 4), np.uint8), np.array([0, 1])
    np.savez(tmp_path / "one.npz", x=x, y=y)
    assert load_dataset(tmp_path / "one.npz", "test").name == "one"  # an evaluation set
    with pytest.raises(ConfigError, match=r"holds a single evaluation split .* split='train'"):
        load_dataset(tmp_path / "one.npz", "train")
    np.savez(tmp_path / "nox.npz", y=y)
    with pytest.raises(MissingTensorError, match="missing array 'x'"):
        load_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "obj.npz", x=x, y=np.array([0, "a"], dtype=object))
    with pytest.raises(FormatError, match="obj.npz"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="not a readable NPZ file"):
        load_npz(tmp_path / "junk.npz")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        load_hdf5(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "grp.h5", "w") as f:
        f.create_group("x")
        f["y"] = y
    with pytest.raises(FormatError, match="'x' must be an HDF5 dataset"):
        load_hdf5(tmp_path / "grp.h5")
    with h5py.File(tmp_path / "noy.h5", "w") as f:
        f["x"] = x
    with pytest.raises(MissingTensorError, match="missing array 'y'"):
        load_hdf5(tmp_path / "noy.h5")
    with pytest.raises(FormatError, match="does not exist"):
        load_hdf5(tmp_path / "absent.h5")


# -- Dataset validation ---------------------------------------------------------------------
def test_dataset_validation():
    x = np.zeros((3, 1, 2, 2), np.float32)
    y = np.array([0, 1, 2])
    names = ["a", "b", "c"]
    with pytest.raises(FormatError, match=r"label 3 is out of range for 3 classes \(expected 0..2\)"):
        Dataset(x, np.array([0, 1, 3]), names)
    with pytest.raises(FormatError, match="label -1 is out of range"):
        Dataset(x, np.array([0, -1, 2]), names)
    xn = x.copy()
    xn[1, 0, 1, 1] = np.nan
    with pytest.raises(FormatError, match="1 NaN/Inf"):
        Dataset(xn, y, names, name="bad")
    with pytest.raises(ShapeError, match="images hold N=3 samples but labels hold N=2"):
        Dataset(x, y[:2], names)
    with pytest.raises(ShapeError, match=r"found shape \(3, 4\) \(rank 2\)"):
        Dataset(np.zeros((3, 4), np.uint8), y, names)
    with pytest.raises(ShapeError, match=r"labels must have shape \(N,\)"):
        Dataset(x, y[:, None], names)
    with pytest.raises(DTypeError, match="labels must be integers, found dtype float64"):
        Dataset(x, y.astype(float), names)
    with pytest.raises(DTypeError, match="images must be uint8 or floating point, found dtype int16"):
        Dataset(x.astype(np.int16), y, names)
    with pytest.raises(ConfigError, match="class_names is empty"):
        Dataset(x, y, [])


def test_hdf5_validation_names_file(tmp_path):
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["x"] = np.full((2, 3, 3), np.nan, np.float32)
        f["y"] = np.array([0, 1])
    with pytest.raises(FormatError, match=r"nan.h5.*NaN/Inf"):
        load_dataset(tmp_path / "nan.h5")
    with h5py.File(tmp_path / "lab.h5", "w") as f:
        f["x"] = np.zeros((2, 3, 3), np.uint8)
        f["y"] = np.array([0, 5])
        f.attrs["class_names"] = ["a", "b"]
    with pytest.raises(FormatError, match=r"lab.h5.*label 5 is out of range for 2 classes"):
        load_dataset(tmp_path / "lab.h5")


# -- subset and batches ---------------------------------------------------------------------
def _small(n=10) -> Dataset:
    x = np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)
    return Dataset(x, np.arange(n) % 3, ["a", "b", "c"], name="small")


def test_subset():
    ds = _small()
    s = ds.subset(4)
    assert len(s) == 4 and s.name == "small"
    np.testing.assert_array_equal(s.images, ds.images[:4])
    s = ds.subset([9, -1, 0])
    np.testing.assert_array_equal(s.labels, ds.labels[[9, 9, 0]])
    s.images[0] = 0  # a copy, not a view
    assert ds.images[9].any()
    assert len(ds.subset([])) == 0 and len(ds.subset(0)) == 0
    for bad, msg in [(11, "n must be in 0..10"), (-1, "n must be in 0..10"),
                     ([10], r"indices must lie in \[-10, 10\)"), ([0.5], "integer indices"),
                     (True, "found a bool")]:
        with pytest.raises(ConfigError, match=msg):
            ds.subset(bad)


def test_batches_order_and_shuffle():
    ds = _small(10)
    got = list(ds.batches(4))
    assert [len(b[1]) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), ds.images)
    perm = np.random.default_rng(5).permutation(10)
    shuffled = list(ds.batches(3, rng=np.random.default_rng(5)))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in shuffled]), ds.labels[perm])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in shuffled]), ds.images[perm])
    by_seed = list(ds.batches(3, rng=5))
    for a, b in zip(shuffled, by_seed):
        np.testing.assert_array_equal(a[0], b[0])
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ConfigError, match="batch_size must be an int >= 1"):
            ds.batches(bad)
    with pytest.raises(ConfigError, match="rng must be a numpy.random.Generator"):
        ds.batches(2, rng="seed")


def test_bundled_files_match_readme_checksums():
    import hashlib
    import re

    table = dict(re.findall(r"\| (t10k-\S+\.gz) \| \d+ \| ([0-9a-f]{32}) \|",
                            (BUNDLED_DIR / "README.md").read_text()))
    assert len(table) == 2
    for name, md5 in table.items():
        assert hashlib.md5((BUNDLED_DIR / name).read_bytes()).hexdigest() == md5
