"""Loading datasets from IDX folders, HDF5 and NPZ files, and by name."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .. import config
from ..errors import ConfigError, FormatError, MissingTensorError, NumhardenError
from .dataset import FASHION_MNIST_CLASSES, MNIST_CLASSES, Dataset, _coerce_labels
from .idx import read_idx

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SPLITS = {"train": "train", "test": "t10k"}  # split -> IDX file prefix (MNIST naming)
NAMED = ("fashion-mnist", "mnist")


def _check_split(split: str, where: str) -> str:
    if split not in SPLITS:
        raise ConfigError(
            f"{where}: split must be one of {sorted(SPLITS)}, found {split!r}"
        )
    return SPLITS[split]


def _find_idx(folder: Path, prefix: str, kind: str, rank: int) -> Path:
    # MNIST's own naming ('t10k-images-idx3-ubyte') and the common dotted variant
    # ('t10k-images.idx3-ubyte'), each raw or gzipped
    names = [f"{prefix}-{kind}{sep}idx{rank}-ubyte{gz}"
             for sep in ("-", ".") for gz in ("", ".gz")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise MissingTensorError(
        f"IDX folder {str(folder)!r}: no {kind} file for this split; expected one of "
        f"{names}"
    )


def _default_names(labels: np.ndarray) -> list[str]:
    k = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 1
    return [str(i) for i in range(k)]


def load_idx_dir(
    folder: str | Path,
    split: str = "test",
    *,
    class_names: list[str] | None = None,
    name: str | None = None,
) -> Dataset:
    """Load one split from a folder of MNIST-style IDX files.

    Parameters
    ----------
    folder : str or Path
        Holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` (a ``.``
        before ``idx`` is accepted too).
    split : {'test', 'train'}
    class_names : list of str, optional
        Default: ``'0' .. str(max label)``.
    name : str, optional
        Default: ``'<folder name>/<split>'``.

    Returns
    -------
    Dataset
        images uint8 (N, 1, H, W), labels int64 (N,).
    """
    folder = Path(folder)
    where = f"IDX folder {str(folder)!r}"
    prefix = _check_split(split, where)
    if not folder.is_dir():
        raise FormatError(f"{where} does not exist or is not a directory; check the path")
    img_path = _find_idx(folder, prefix, "images", 3)
    lab_path = _find_idx(folder, prefix, "labels", 1)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise FormatError(
            f"IDX file {str(img_path)!r}: expected 3 dimensions (N, H, W), found "
            f"{images.ndim} with shape {images.shape}"
        )
    if labels.ndim != 1:
        raise FormatError(
            f"IDX file {str(lab_path)!r}: expected 1 dimension (N,), found "
            f"{labels.ndim} with shape {labels.shape}"
        )
    return Dataset(
        images=images,
        labels=labels,
        class_names=class_names if class_names is not None else _default_names(labels),
        name=name or f"{folder.name}/{split}",
        source=folder,
    )


def _split_keys(keys, split: str | None, where: str) -> tuple[str, str, str | None]:
    """Pick ('x', 'y') or the Keras-style ('x_<split>', 'y_<split>'); also return the
    split the keys belong to (None for a single-split file).

    A single-split file is an evaluation set: it answers split None or 'test'."""
    keys = set(keys)
    if "x" in keys or "y" in keys:
        if split not in (None, "test"):
            raise ConfigError(
                f"{where} holds a single evaluation split ('x', 'y'), so split={split!r} "
                f"cannot be served; pass split=None or 'test', or store 'x_{split}' and "
                f"'y_{split}' to provide that split"
            )
        xk, yk, split = "x", "y", None
    else:
        split = "test" if split is None else split
        xk, yk = f"x_{split}", f"y_{split}"
    for k in (xk, yk):
        if k not in keys:
            raise MissingTensorError(
                f"{where}: missing array {k!r}; found {sorted(keys)}. A dataset file "
                "holds 'x' (N,C,H,W) or (N,H,W) and 'y' (N,), or 'x_<split>'/'y_<split>'"
            )
    return xk, yk, split


def _names_from(raw, labels: np.ndarray, class_names, where: str) -> list[str]:
    if class_names is not None:
        return list(class_names)
    if raw is None:
        return _default_names(labels)
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise FormatError(
            f"{where}: class_names must be a 1-D list of strings, found shape {arr.shape}"
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()]


def load_hdf5(
    path: str | Path, split: str | None = None, *, class_names: list[str] | None = None
) -> Dataset:
    """Load a dataset from an HDF5 file with datasets ``x`` and ``y`` at the root.

    Files holding several splits name them ``x_train``/``y_train``, ``x_test``/...;
    ``split`` selects one (default ``'test'``). A single-split file (``x``, ``y``) is an
    evaluation set: it is returned for split None or ``'test'`` and refuses ``'train'``.

    Parameters
    ----------
    path : str or Path
        File with ``x`` (N, C, H, W) or (N, H, W), uint8 or float, and ``y`` (N,)
        integer; class names from a root attribute ``class_names`` (strings) if present.
    split : {'test', 'train'} or None
    class_names : list of str, optional
        Overrides the stored names; default ``'0' .. str(max label)``.

    Returns
    -------
    Dataset
        images uint8 or float32 (N, C, H, W), labels int64 (N,).
    """
    import h5py

    path = Path(path)
    where = f"dataset file {str(path)!r}"
    if not path.is_file():
        raise FormatError(f"{where} does not exist; check the path")
    try:
        with h5py.File(path, "r") as f:
            xk, yk, split = _split_keys(f.keys(), split, where)
            for k in (xk, yk):
                if not isinstance(f[k], h5py.Dataset):
                    raise FormatError(f"{where}: {k!r} must be an HDF5 dataset, found a group")
            x, y = f[xk][()], f[yk][()]
            raw_names = f.attrs.get("class_names")
    except OSError as exc:
        raise FormatError(
            f"{where} is not a readable HDF5 file ({exc}); check that it is complete "
            "and was written by h5py/HDF5"
        ) from None
    y = _coerce_labels(y, where)
    return Dataset(
        images=x,
        labels=y,
        class_names=_names_from(raw_names, y, class_names, where),
        name=path.stem if split is None else f"{path.stem}/{split}",
        source=path,
    )


def load_npz(
    path: str | Path, split: str | None = None, *, class_names: list[str] | None = None
) -> Dataset:
    """Load a dataset from an ``.npz`` file with arrays ``x`` and ``y``.

    Same conventions and return value as :func:`load_hdf5`; class names come from an
    optional array ``class_names``. Object arrays are refused (``allow_pickle=False``).

    Parameters
    ----------
    path : str or Path
    split : {'test', 'train'} or None
    class_names : list of str, optional
    """
    path = Path(path)
    where = f"dataset file {str(path)!r}"
    if not path.is_file():
        raise FormatError(f"{where} does not exist; check the path")
    if not zipfile.is_zipfile(path):
        raise FormatError(
            f"{where} is not a readable NPZ file (expected a zip archive); write it with "
            "numpy.savez"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            xk, yk, split = _split_keys(f.files, split, where)
            x, y = f[xk], f[yk]
            raw_names = f["class_names"] if "class_names" in f.files else None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(
            f"{where} is not a readable NPZ file ({exc}); write it with numpy.savez"
        ) from None
    except ValueError as exc:
        if isinstance(exc, NumhardenError):
            raise
        # numpy refuses object arrays without pickle
        raise FormatError(f"{where}: {exc}; store plain numeric/string arrays") from None
    y = _coerce_labels(y, where)
    return Dataset(
        images=x,
        labels=y,
        class_names=_names_from(raw_names, y, class_names, where),
        name=path.stem if split is None else f"{path.stem}/{split}",
        source=path,
    )


def _load_named(spec: str, split: str, root, class_names) -> Dataset:
    names = class_names
    if spec == "fashion-mnist":
        names = FASHION_MNIST_CLASSES if names is None else names
        if root is None and split == "test":
            folder = BUNDLED_DIR
        else:
            folder = Path(root if root is not None else config.get("data_dir"))
            if not folder.is_dir():
                raise FormatError(
                    f"Fashion-MNIST {split} split: folder {str(folder)!r} does not exist. "
                    "Install it with `apt-get install dataset-fashion-mnist`, or set "
                    "NUMHARDEN_DATA_DIR (or pass root=) to a folder holding the IDX files"
                )
    else:  # mnist
        names = MNIST_CLASSES if names is None else names
        if root is None:
            raise ConfigError(
                "dataset 'mnist' is not bundled; download the four IDX files from "
                "http://yann.lecun.com/exdb/mnist/ and pass their folder: "
                "load_dataset('mnist', root='/path/to/mnist')"
            )
        folder = Path(root)
    return load_idx_dir(folder, split, class_names=names, name=f"{spec}/{split}")


def load_dataset(
    spec: str | Path,
    split: str | None = None,
    *,
    root: str | Path | None = None,
    class_names: list[str] | None = None,
) -> Dataset:
    """Load a dataset by name, IDX folder or file path.

    Parameters
    ----------
    spec : str or Path
        ``'fashion-mnist'`` (test split bundled with numharden; train split read from
        ``root`` or ``config.get('data_dir')``), ``'mnist'`` (needs ``root``), a folder
        of IDX files, or a ``.h5``/``.hdf5``/``.npz`` file.
    split : {'test', 'train'} or None
        None means ``'test'``. A single-split file (``x``/``y``) is an evaluation set
        and serves only None or ``'test'``.
    root : str or Path, optional
        Folder of IDX files for the named datasets only.
    class_names : list of str, optional
        Overrides the names stored with or implied by the data.

    Returns
    -------
    Dataset
        Images as stored (uint8 or float32, NCHW), labels int64; no normalisation.
    """
    where = f"load_dataset({str(spec)!r})"
    if split is not None:
        _check_split(split, where)  # name the bad split before looking for files
    if isinstance(spec, str) and spec in NAMED:
        return _load_named(spec, _split_or_test(split), root, class_names)
    if root is not None:
        raise ConfigError(f"{where}: root= applies only to {list(NAMED)}; drop it")
    path = Path(spec)
    if path.is_dir():
        return load_idx_dir(path, _split_or_test(split), class_names=class_names)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        if split is not None:
            _check_split(split, where)
        return load_hdf5(path, split, class_names=class_names)
    if suffix == ".npz":
        if split is not None:
            _check_split(split, where)
        return load_npz(path, split, class_names=class_names)
    if not path.exists():
        raise FormatError(
            f"{where}: not a known dataset name ({', '.join(NAMED)}) and no such file "
            "or folder; give a name, an IDX folder or a .h5/.hdf5/.npz file"
        )
    raise FormatError(
        f"{where}: expected an IDX folder or a file ending in .h5, .hdf5 or .npz, "
        f"found {path.suffix or 'no suffix'!r}; convert the data (see numharden.data)"
    )


def _split_or_test(split: str | None) -> str:
    return "test" if split is None else split
