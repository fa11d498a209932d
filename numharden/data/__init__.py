"""Datasets: IDX folders, HDF5 and NPZ files, and the bundled Fashion-MNIST test split.

Images are returned exactly as stored (uint8 or float32, NCHW); the model records its
own normalisation (``Model.normalize``).
"""

from .dataset import FASHION_MNIST_CLASSES, MNIST_CLASSES, Dataset
from .idx import read_idx
from .loaders import BUNDLED_DIR, load_dataset, load_hdf5, load_idx_dir, load_npz

__all__ = [
    "BUNDLED_DIR",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "Dataset",
    "load_dataset",
    "load_hdf5",
    "load_idx_dir",
    "load_npz",
    "read_idx",
]
