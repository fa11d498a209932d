"""The in-memory labelled image set every numharden loop consumes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DTypeError, FormatError, ShapeError

FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES: list[str] = [str(k) for k in range(10)]


def _coerce_images(images, where: str) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    else:
        raise DTypeError(
            f"{where}: images must be uint8 or floating point, found dtype {x.dtype}; "
            "convert them with images.astype(np.uint8) (0..255 pixels) or "
            "images.astype(np.float32)"
        )
    if x.ndim == 3:
        x = x[:, None, :, :]
    if x.ndim != 4:
        raise ShapeError(
            f"{where}: images must have shape (N, C, H, W) or (N, H, W), found shape "
            f"{x.shape} (rank {x.ndim}); reshape them to NCHW"
        )
    if x.dtype == np.float32 and not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise FormatError(
            f"{where}: images contain {bad} NaN/Inf values (expected finite pixels); "
            "clean or re-export the data"
        )
    return np.ascontiguousarray(x)


def _coerce_labels(labels, where: str) -> np.ndarray:
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise DTypeError(
            f"{where}: labels must be integers, found dtype {y.dtype}; "
            "convert them with labels.astype(np.int64)"
        )
    if y.ndim != 1:
        raise ShapeError(
            f"{where}: labels must have shape (N,), found shape {y.shape}; "
            "flatten them with labels.reshape(-1)"
        )
    if y.dtype == np.uint64 and y.size and y.max() > np.iinfo(np.int64).max:
        raise FormatError(f"{where}: label {int(y.max())} does not fit in int64")
    return np.ascontiguousarray(y.astype(np.int64, copy=False))


@dataclass
class Dataset:
    """Labelled images, kept exactly as stored (no normalisation).

    Attributes
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float32
        (N, H, W) input gets a channel axis; other float dtypes become float32.
    labels : ndarray, shape (N,), int64
        Class indices in ``0 .. len(class_names) - 1``.
    class_names : list of str
    name : str
        Human-readable identifier, e.g. ``'fashion-mnist/test'``.
    source : Path or None
        File or folder the data came from (None when built in memory).

    Raises
    ------
    DTypeError, ShapeError, FormatError
        On construction: wrong dtypes, wrong rank, different N in images and labels,
        NaN/Inf in float images, labels outside the class range.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    name: str = "dataset"
    source: Path | None = field(default=None)

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}" + (f" ({self.source})" if self.source else "")
        self.images = _coerce_images(self.images, where)
        self.labels = _coerce_labels(self.labels, where)
        self.class_names = [str(c) for c in self.class_names]
        if self.source is not None:
            self.source = Path(self.source)
        n_img, n_lab = self.images.shape[0], self.labels.shape[0]
        if n_img != n_lab:
            raise ShapeError(
                f"{where}: images hold N={n_img} samples but labels hold N={n_lab}; "
                "both must have the same first dimension"
            )
        k = len(self.class_names)
        if k == 0:
            raise ConfigError(f"{where}: class_names is empty; give one name per class")
        if n_lab:
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                raise FormatError(
                    f"{where}: label {bad} is out of range for {k} classes "
                    f"(expected 0..{k - 1}); fix the labels or pass the full class_names"
                )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_for_model(self, num_classes: int, input_shape, what: str = "dataset") -> None:
        """Refuse data a model with ``num_classes`` outputs and per-sample input
        ``input_shape`` (C, H, W) cannot be scored on: no images, other image shape, or a
        label outside ``0 .. num_classes - 1`` (every image would count as wrong).

        Raises
        ------
        ShapeError
            Naming the dataset, what the model expects and what was found.
        """
        where = f"{what} {self.name!r}" + (f" ({self.source})" if self.source else "")
        if len(self) == 0:
            raise ShapeError(f"{where} holds no images; give data with at least one "
                             f"labelled image")
        want = tuple(int(d) for d in input_shape)
        if self.image_shape != want:
            raise ShapeError(f"{where} holds images of shape {self.image_shape}, the model "
                             f"expects {want} (C, H, W); use data of the model's input size")
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= num_classes:
            raise ShapeError(f"{where} has labels {lo}..{hi}, but the model has "
                             f"{num_classes} classes (labels 0..{num_classes - 1}); use data "
                             f"labelled for this model, or a model with matching classes")

    def subset(self, n_or_indices: int | Sequence[int] | np.ndarray) -> Dataset:
        """A new Dataset holding the first ``n`` samples or the given indices (copied).

        Parameters
        ----------
        n_or_indices : int or sequence of int
            ``n`` with ``0 <= n <= len(self)``, or indices in ``[-len, len)``
            (repeats allowed, order kept).
        """
        n_total = len(self)
        if isinstance(n_or_indices, (bool, np.bool_)):
            raise ConfigError(f"subset of {self.name!r}: expected an int or indices, found a bool")
        if isinstance(n_or_indices, (int, np.integer)):
            n = int(n_or_indices)
            if not 0 <= n <= n_total:
                raise ConfigError(
                    f"subset of {self.name!r}: n must be in 0..{n_total}, found {n}"
                )
            idx = np.arange(n)
        else:
            idx = np.asarray(n_or_indices)
            if idx.size == 0:
                idx = idx.astype(np.int64)
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ConfigError(
                    f"subset of {self.name!r}: expected a 1-D sequence of integer indices, "
                    f"found shape {idx.shape} dtype {idx.dtype}"
                )
            if idx.size and (idx.min() < -n_total or idx.max() >= n_total):
                raise ConfigError(
                    f"subset of {self.name!r}: indices must lie in [{-n_total}, {n_total}), "
                    f"found range [{int(idx.min())}, {int(idx.max())}]"
                )
        return Dataset(
            images=self.images[idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            name=self.name,
            source=self.source,
        )

    def batches(
        self, batch_size: int, rng: np.random.Generator | int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over ``(images, labels)`` batches covering every sample once.

        Parameters
        ----------
        batch_size : int
            Samples per batch (>= 1); the last batch may be smaller.
        rng : numpy.random.Generator, int or None
            None keeps the stored order (the batches are views); a Generator or seed
            draws one permutation per call (the batches are copies).

        Yields
        ------
        images : ndarray, shape (B, C, H, W), dtype of ``self.images``
        labels : ndarray, shape (B,), int64
        """
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(
            batch_size, (int, np.integer)
        ) or batch_size < 1:
            raise ConfigError(
                f"batches of {self.name!r}: batch_size must be an int >= 1, "
                f"found {batch_size!r}"
            )
        if rng is not None and not isinstance(rng, np.random.Generator):
            if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
                raise ConfigError(
                    f"batches of {self.name!r}: rng must be a numpy.random.Generator, an "
                    f"int seed or None, found {type(rng).__name__}"
                )
            rng = np.random.default_rng(int(rng))
        return self._iter_batches(int(batch_size), rng)

    def _iter_batches(self, bs: int, rng: np.random.Generator | None):
        n = len(self)
        order = None if rng is None else rng.permutation(n)
        for start in range(0, n, bs):
            if order is None:
                yield self.images[start:start + bs], self.labels[start:start + bs]
            else:
                sel = order[start:start + bs]
                yield self.images[sel], self.labels[sel]
