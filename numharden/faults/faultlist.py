"""FaultList: a struct of arrays describing faults on stored tensors, with HDF5 I/O.

The HDF5 group layout (version 1) is documented in docs/FAULTS.md so that a C++
testbench can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError
from .model import KIND_NAMES

LAYOUT_VERSION = 1
_ARRAYS = {  # name -> dtype
    "tensor": np.dtype(np.int32),
    "index": np.dtype(np.int64),
    "bit": np.dtype(np.uint8),
    "kind": np.dtype(np.uint8),
    "old": np.dtype(np.uint32),
    "new": np.dtype(np.uint32),
    "masked": np.dtype(np.uint8),
}


@dataclass(eq=False)
class FaultList:
    """Faults as parallel arrays, in application order (k faults over T named tensors).

    Attributes
    ----------
    names : tuple of str, (T,)
        Tensor (or node) names; ``tensor`` indexes into it.
    formats : tuple of str, (T,)
        Format spec of each named tensor (checked on replay).
    sizes : ndarray, (T,), int64
        Number of values of each named tensor (checked on replay).
    tensor : ndarray, (k,), int32
    index : ndarray, (k,), int64
        Flat C-order index of the value within its tensor.
    bit : ndarray, (k,), uint8
        Bit position, 0 = LSB of the stored code.
    kind : ndarray, (k,), uint8
        0 flip, 1 stuck-at-0, 2 stuck-at-1.
    old, new : ndarray, (k,), uint32
        Raw stored code before / after the fault (zero-extended; valid once ``applied``).
    masked : ndarray, (k,), bool
        Fault left the code unchanged (stuck-at to the value already stored).
    applied : bool
        Whether ``old``, ``new`` and ``masked`` were recorded by an application.
    """

    names: tuple[str, ...]
    formats: tuple[str, ...]
    sizes: np.ndarray
    tensor: np.ndarray
    index: np.ndarray
    bit: np.ndarray
    kind: np.ndarray
    old: np.ndarray = field(default=None)
    new: np.ndarray = field(default=None)
    masked: np.ndarray = field(default=None)
    applied: bool = False

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.formats = tuple(self.formats)
        self.sizes = np.asarray(self.sizes, dtype=np.int64)
        k = len(self.tensor)
        for name in ("old", "new"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(k, np.uint32))
        if self.masked is None:
            self.masked = np.zeros(k, bool)
        for name, dt in _ARRAYS.items():
            arr = getattr(self, name)
            if name == "masked":
                dt = np.dtype(bool)
            setattr(self, name, np.ascontiguousarray(arr, dtype=dt))
            if getattr(self, name).shape != (k,):
                raise FormatError(
                    f"FaultList.{name}: expected shape ({k},) like FaultList.tensor, found "
                    f"{getattr(self, name).shape}"
                )
        if len(self.formats) != len(self.names) or self.sizes.shape != (len(self.names),):
            raise FormatError(
                f"FaultList: {len(self.names)} names need as many formats and sizes, found "
                f"{len(self.formats)} formats and sizes of shape {self.sizes.shape}"
            )

    def __len__(self) -> int:
        return len(self.tensor)

    @property
    def n_masked(self) -> int:
        """Number of faults that left the stored code unchanged."""
        return int(self.masked.sum())

    def counts(self) -> dict[str, int]:
        """Number of faults per tensor name."""
        c = np.bincount(self.tensor, minlength=len(self.names))
        return {n: int(v) for n, v in zip(self.names, c)}

    def kind_names(self) -> list[str]:
        """Kind of each fault as 'flip' / 'sa0' / 'sa1'."""
        return [KIND_NAMES[k] for k in self.kind]

    def same_as(self, other: FaultList) -> bool:
        """True if both lists hold the same faults, records and tensor table."""
        return (self.names == other.names and self.formats == other.formats
                and self.applied == other.applied
                and np.array_equal(self.sizes, other.sizes)
                and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in _ARRAYS))

    # -- HDF5 -------------------------------------------------------------------------
    def save(self, group) -> None:
        """Write the list into an h5py group (layout: docs/FAULTS.md, version 1)."""
        import h5py

        group.attrs["numharden_faultlist"] = LAYOUT_VERSION
        group.attrs["n_faults"] = len(self)
        group.attrs["applied"] = np.uint8(self.applied)
        group.attrs["kind_names"] = ",".join(KIND_NAMES)
        group.attrs["bit_numbering"] = "bit 0 = least significant bit of the stored code"
        strs = h5py.string_dtype("utf-8")
        group.create_dataset("tensor_names", data=np.array(self.names, dtype=object), dtype=strs)
        group.create_dataset("tensor_formats", data=np.array(self.formats, dtype=object),
                             dtype=strs)
        group.create_dataset("tensor_sizes", data=self.sizes)
        for name, dt in _ARRAYS.items():
            group.create_dataset(name, data=getattr(self, name).astype(dt))

    @classmethod
    def load(cls, group) -> FaultList:
        """Read a list written by :meth:`save`; FormatError names what is wrong."""
        where = f"fault list group {getattr(group, 'name', group)!r}"
        version = group.attrs.get("numharden_faultlist")
        if version != LAYOUT_VERSION:
            raise FormatError(
                f"{where}: attribute numharden_faultlist expected {LAYOUT_VERSION}, found "
                f"{version!r}; write it with FaultList.save"
            )
        need = ["tensor_names", "tensor_formats", "tensor_sizes", *_ARRAYS]
        missing = [d for d in need if d not in group]
        if missing:
            raise FormatError(f"{where}: missing dataset(s) {missing}; expected {need}")
        arrays = {}
        for name, dt in _ARRAYS.items():
            ds = group[name]
            if ds.dtype != dt or ds.ndim != 1:
                raise FormatError(
                    f"{where}: dataset {name!r} expected 1-d {dt}, found {ds.ndim}-d {ds.dtype}"
                )
            arrays[name] = ds[()]
        names = tuple(s.decode() if isinstance(s, bytes) else str(s)
                      for s in group["tensor_names"][()])
        fmts = tuple(s.decode() if isinstance(s, bytes) else str(s)
                     for s in group["tensor_formats"][()])
        sizes = group["tensor_sizes"][()]
        t = arrays["tensor"]
        if len(t) and (t.min() < 0 or t.max() >= len(names)):
            raise FormatError(f"{where}: tensor ids must index {len(names)} tensor_names")
        if len(arrays["kind"]) and arrays["kind"].max() > 2:
            raise FormatError(f"{where}: kind must be 0 flip, 1 sa0, 2 sa1")
        arrays["masked"] = arrays["masked"].astype(bool)
        return cls(names, fmts, sizes, applied=bool(group.attrs.get("applied", 0)), **arrays)
