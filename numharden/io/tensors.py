"""Parameter groups of a model file (docs/FORMAT.md section 5) and the content checksum
(section 7): read, write and check one stored tensor."""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import (ConfigError, DTypeError, FormatError, MissingTensorError,
                      NumhardenError, ShapeError)
from ..formats import Format, StoredTensor, parse_format

MEMBERS = ("codes", "scale", "zero_point", "protect")
DIGEST_PREFIX = b"numharden-model-v1\0"


def has_scale(fmt: Format) -> bool:
    """True if the format stores a ``scale`` dataset (symmetric int and affine uint)."""
    return fmt.kind in ("int", "affine")


def has_zero_point(fmt: Format) -> bool:
    return fmt.kind == "affine"


def code_range(fmt: Format) -> tuple[int, int]:
    """Valid stored integer codes of a non-float format (full range of ``bits``)."""
    if fmt.signed:
        return -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1
    return 0, (1 << fmt.bits) - 1


def _nonfinite(fmt: Format, codes: np.ndarray) -> np.ndarray:
    if fmt.spec == "bf16":  # exponent all ones: Inf or NaN
        return (codes & np.uint16(0x7F80)) == np.uint16(0x7F80)
    return ~np.isfinite(codes)


def check_values(fmt: Format, codes, scale, zero_point, label: str, *,
                 faulted: bool = False) -> None:
    """Raise FormatError if codes, scale or zero point hold values the format forbids.

    ``faulted=True`` (a faulted model file, FORMAT.md section 8) admits NaN/Inf float
    codes, which bit faults legitimately produce; every other rule still applies.

    Parameters
    ----------
    fmt : Format
    codes : ndarray, ``fmt.storage_dtype``
    scale : ndarray float32 or None
    zero_point : ndarray int32 or None
    label : str
        Names the file and tensor in messages.
    """
    if codes.size:
        if fmt.kind == "float":
            bad = _nonfinite(fmt, codes) if not faulted else np.zeros(0, bool)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise FormatError(
                    f"{label}: {fmt.spec} codes hold {int(bad.sum())} NaN/Inf value(s) (first "
                    f"at index {first}); a model file stores finite weights - fix the tensor "
                    "or keep the clean model and a fault list (docs/FAULTS.md)")
        else:
            lo, hi = code_range(fmt)
            cmin, cmax = int(codes.min()), int(codes.max())
            if cmin < lo or cmax > hi:
                raise FormatError(
                    f"{label}: {fmt.spec} codes must lie in [{lo}, {hi}] ({fmt.bits} bits, "
                    f"stored {'sign' if fmt.signed else 'zero'}-extended in "
                    f"{fmt.storage_dtype}), found [{cmin}, {cmax}]; the file is corrupt or "
                    "was written with the wrong format attribute")
    if scale is not None:
        bad = ~np.isfinite(scale) | ~(scale > 0)
        if bad.any():
            raise FormatError(
                f"{label}: scale must be finite and > 0, found {scale.ravel()[bad.ravel()][:4]} "
                f"({int(bad.sum())} bad value(s)); an all-zero channel uses scale 1")
    if zero_point is not None and zero_point.size:
        lo, hi = code_range(fmt)
        if int(zero_point.min()) < lo or int(zero_point.max()) > hi:
            raise FormatError(
                f"{label}: zero_point must lie in [{lo}, {hi}], found "
                f"[{int(zero_point.min())}, {int(zero_point.max())}]")


def check_stored(name: str, st: StoredTensor, where: str, *, faulted: bool = False) -> None:
    """Check an in-memory StoredTensor before saving (same rules as loading)."""
    label = f"{where}: parameter {name!r}"
    _check_name(name, where)
    if not isinstance(st, StoredTensor):
        raise DTypeError(f"{label}: expected a StoredTensor, found {type(st).__name__}; "
                         "encode it with numharden.formats.parse_format(spec).encode(x)")
    check_values(st.fmt, st.codes, st.scale, st.zero_point, label, faulted=faulted)


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise FormatError(f"{where}: parameter name {name!r} is not allowed; names are "
                          "non-empty, contain no '/' and are not '.' or '..'")


def write_tensor(params_group, name: str, st: StoredTensor) -> None:
    """Write ``st`` as the group ``/params/<name>`` (codes, scale, zero_point, attrs)."""
    g = params_group.create_group(name)
    g.attrs["format"] = st.fmt.spec
    if st.fmt.per_channel:
        g.attrs["axis"] = np.int64(st.axis)
    g.create_dataset("codes", data=_little(st.codes))
    if has_scale(st.fmt):
        g.create_dataset("scale", data=_little(np.asarray(st.scale, np.float32)))
    if has_zero_point(st.fmt):
        g.create_dataset("zero_point", data=_little(np.asarray(st.zero_point, np.int32)))
    if st.protect is not None:
        g.create_dataset("protect", data=st.protect.astype(np.uint8))


def _little(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # keeps 0-d shape


def _str_attr(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def read_tensor(h5py, params_group, name: str, where: str, *,
                faulted: bool = False) -> tuple[StoredTensor, tuple]:
    """Read and check ``/params/<name>``.

    Returns
    -------
    st : StoredTensor
    digest_entry : tuple
        ``(name, format attribute as stored, axis or None, codes, scale, zero_point,
        protect)`` (None where absent)
        for :func:`digest`.
    """
    label = f"{where}: parameter {name!r}"
    if name not in params_group:
        raise MissingTensorError(f"{label} is missing: no group /params/{name}; write it "
                                 "(docs/FORMAT.md section 5) or fix the node's params")
    g = params_group[name]
    if not isinstance(g, h5py.Group):
        raise FormatError(f"{label}: /params/{name} must be a group holding codes (and scale, "
                          "zero_point), found a dataset")
    extra = sorted(set(g) - set(MEMBERS))
    if extra:
        raise FormatError(f"{label}: unknown member(s) {extra} in /params/{name}; allowed: "
                          f"{list(MEMBERS)}")
    spec = _str_attr(g.attrs.get("format"))
    if spec is None:
        raise FormatError(f"{label}: attribute 'format' (a string such as 'int8' or 'fp32') "
                          f"is missing or not a string, found {g.attrs.get('format')!r}")
    try:
        fmt = parse_format(spec)
    except ConfigError as exc:
        raise FormatError(f"{label}: {exc}") from None
    if "codes" not in g:
        raise MissingTensorError(f"{label}: dataset /params/{name}/codes is missing")
    codes = _read(h5py, g, "codes", fmt.storage_dtype, label)
    axis = _read_axis(g, fmt, codes.ndim, label)
    scale = _optional(h5py, g, "scale", has_scale(fmt), np.dtype(np.float32), fmt, label)
    zp = _optional(h5py, g, "zero_point", has_zero_point(fmt), np.dtype(np.int32), fmt, label)
    want = () if axis is None else (codes.shape[axis],)
    for member, arr in (("scale", scale), ("zero_point", zp)):
        if arr is not None and arr.shape != want:
            raise ShapeError(f"{label}: {member} has shape {arr.shape}, expected {want} for "
                             f"{fmt.spec} codes of shape {codes.shape}"
                             + (f" along axis {axis}" if axis is not None else ""))
    check_values(fmt, codes, scale, zp, label, faulted=faulted)
    protect = None
    if "protect" in g:
        protect = _read(h5py, g, "protect", np.dtype(np.uint8), label)
        if protect.shape != codes.shape or (protect.size and int(protect.max()) > 1):
            raise FormatError(f"{label}: protect must be uint8 0/1 of the codes' shape "
                              f"{codes.shape}, found shape {protect.shape} with values up to "
                              f"{int(protect.max()) if protect.size else 0}")
    try:
        st = StoredTensor(codes, fmt, scale, zp, axis, protect=protect)
    except NumhardenError as exc:  # anything the format itself still refuses
        raise type(exc)(f"{label}: {exc}") from None
    return st, (name, spec, axis, codes, scale, zp, protect)


def _read(h5py, g, member: str, dtype: np.dtype, label: str) -> np.ndarray:
    ds = g[member]
    if not isinstance(ds, h5py.Dataset):
        raise FormatError(f"{label}: {member} must be a dataset, found a group")
    found = ds.dtype
    if found.kind != dtype.kind or found.itemsize != dtype.itemsize:
        raise DTypeError(f"{label}: {member} has dtype {found}, expected {dtype} for this "
                         f"format; write it with np.asarray(..., dtype=np.{dtype.name})")
    return np.asarray(ds[()], dtype=dtype, order="C")


def _optional(h5py, g, member, required: bool, dtype, fmt, label):
    if member in g:
        if not required:
            raise FormatError(f"{label}: format {fmt.spec} has no {member}, but the group holds "
                              f"one; remove it (docs/FORMAT.md section 5)")
        return _read(h5py, g, member, dtype, label)
    if required:
        raise MissingTensorError(f"{label}: dataset {member} is missing; format {fmt.spec} "
                                 f"needs a {dtype.name} {member}")
    return None


def _read_axis(g, fmt: Format, ndim: int, label: str) -> int | None:
    if "axis" not in g.attrs:
        if fmt.per_channel:
            raise FormatError(f"{label}: per-channel format {fmt.spec} needs an integer "
                              "attribute 'axis' (0 for the output channel of a weight)")
        return None
    if not fmt.per_channel:
        raise FormatError(f"{label}: format {fmt.spec} is per-tensor but the group has an "
                          f"'axis' attribute; remove it or use '{fmt.spec}/ch'")
    axis = np.asarray(g.attrs["axis"])
    if axis.shape != () or axis.dtype.kind not in "iu" or not 0 <= int(axis) < ndim:
        raise FormatError(f"{label}: attribute 'axis' must be an integer in [0, {ndim}) for "
                          f"codes of rank {ndim}, found {g.attrs['axis']!r}")
    return int(axis)


def digest(graph_text: bytes, meta_text: bytes, entries) -> str:
    """SHA-256 content checksum of docs/FORMAT.md section 7 (lowercase hex).

    Parameters
    ----------
    graph_text, meta_text : bytes
        UTF-8 JSON text of ``/graph`` and ``/meta`` as stored.
    entries : iterable of tuple
        ``(name, format string, axis or None, codes, scale, zero_point, protect)``
        (None where absent; a 6-tuple means no protect mask).
    """
    h = hashlib.sha256(DIGEST_PREFIX)
    h.update(graph_text + b"\0")
    h.update(meta_text + b"\0")
    for entry in sorted(entries, key=lambda e: e[0].encode()):
        name, spec, axis, codes, scale, zp = entry[:6]
        protect = entry[6] if len(entry) > 6 else None
        fields = (name, spec, "" if axis is None else str(int(axis)),
                  ",".join(str(d) for d in codes.shape))
        for field in fields:
            h.update(field.encode("utf-8") + b"\0")
        for arr in (codes, scale, zp, None if protect is None else protect.astype(np.uint8)):
            if arr is not None:
                h.update(_little(np.asarray(arr)).tobytes())
    return h.hexdigest()
