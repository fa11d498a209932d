"""Tests of numharden.io: round trips, the on-disk layout, atomic saving, built-in names."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from naive_io import naive_forward, naive_read_model
from numharden.errors import ConfigError, FormatError
from numharden.formats import StoredTensor, parse_format
from numharden.graph import OPS, GraphBuilder, Model
from numharden.io import (FORMAT_VERSION, builtin_names, content_sha256, load_model,
                          resolve_model_path, save_model)
from numharden.io import hdf5 as io_hdf5
from numharden.io.schema import OP_ATTRS

FORMATS = ["fp32", "fp16", "bf16", "int2", "int4", "int8", "int3/ch", "int8/ch", "uint2",
           "uint8", "uint4/ch", "q4.4", "q2.1", "q8.8", "q6.10", "q16.16"]


def small_model(weight_format="int4/ch", seed=0) -> Model:
    """conv-bn-relu-act_quant-maxpool-flatten-linear on (1, 8, 8) inputs, 3 classes."""
    b = GraphBuilder((1, 8, 8), seed=seed)
    x = b.conv2d("conv1", b.input, 4, 3, padding=1)
    x = b.relu("relu1", b.batchnorm("bn1", x))
    x = b.act_quant("aq1", x, 4, clip=2.0)
    x = b.flatten("flat", b.maxpool2d("pool1", x, 2))
    out = b.linear("fc", x, 3)
    meta = {"normalization": {"mean": [0.5], "std": [0.25]}, "class_names": ["a", "b", "c"],
            "arch": "small", "training": {"epochs": 3, "acc": 0.5, "nested": [1, None, "x"]}}
    m = b.build(out, weight_format=weight_format, meta=meta)
    rng = np.random.default_rng(seed + 1)
    for role, name in m.graph["bn1"].params.items():  # non-trivial batch-norm statistics
        v = rng.uniform(0.5, 1.5, 4) if role in ("weight", "running_var") else rng.normal(0, .2, 4)
        m.params[name] = parse_format("fp32").encode(v.astype(np.float32))
    return m


def assert_same_model(a: Model, b: Model) -> None:
    assert a.graph.to_dict() == b.graph.to_dict()
    assert a.meta == b.meta
    assert sorted(a.params) == sorted(b.params)
    for name, sa in a.params.items():
        sb = b.params[name]
        assert sa.fmt == sb.fmt and sa.axis == sb.axis, name
        assert sa.codes.dtype == sb.codes.dtype and sa.codes.shape == sb.codes.shape, name
        np.testing.assert_array_equal(sa.raw(), sb.raw())  # bit-identical codes
        for x, y in ((sa.scale, sb.scale), (sa.zero_point, sb.zero_point)):
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and x.shape == y.shape
                np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))


def test_schema_covers_every_graph_op():
    assert set(OP_ATTRS) == set(OPS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_every_format(tmp_path, fmt):
    m = small_model(fmt)
    path = save_model(m, tmp_path / "m.h5")
    m2 = load_model(path)
    assert_same_model(m, m2)
    assert m2.checksum() == m.checksum()
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(m.forward(x), m2.forward(x))


def test_layout_matches_format_md(tmp_path):
    """Read the saved file with h5py alone and check every documented name and dtype."""
    m = small_model("uint4/ch")
    m.params["fc.weight"] = parse_format("int8").encode(m.params["fc.weight"].decode())
    save_model(m, tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["format"] == "numharden-model"
        assert int(f.attrs["format_version"]) == FORMAT_VERSION == 1
        assert f.attrs["sha256"] == content_sha256(f) and len(f.attrs["sha256"]) == 64
        assert set(f) == {"graph", "meta", "params"}
        assert json.loads(f["graph"][()]) == m.graph.to_dict()
        assert json.loads(f["meta"][()]) == m.meta
        assert set(f["params"]) == set(m.params)
        w = f["params/conv1.weight"]
        assert w.attrs["format"] == "uint4/ch" and int(w.attrs["axis"]) == 0
        assert w["codes"].dtype == np.uint8 and w["codes"].shape == (4, 1, 3, 3)
        assert w["scale"].dtype == np.float32 and w["scale"].shape == (4,)
        assert w["zero_point"].dtype == np.int32 and w["zero_point"].shape == (4,)
        clip = f["params/aq1.clip"]
        assert clip.attrs["format"] == "fp32" and "axis" not in clip.attrs
        assert set(clip) == {"codes"} and clip["codes"].shape == (1,)
        assert f["params/fc.weight/scale"].shape == ()  # per-tensor scale: scalar dataset
        assert w["codes"].dtype.byteorder in ("<", "|", "=")
    graph, _, params = naive_read_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(params["conv1.weight"], m.params["conv1.weight"].decode())


def test_engine_matches_naive_interpreter_on_all_ops(tmp_path):
    """Every op, with padding/dilation/groups/ceil_mode variants, evaluated from the file by
    the h5py-only interpreter written from FORMAT.md, against the engine (float64)."""
    b = GraphBuilder((2, 9, 9), seed=4)
    x = b.conv2d("c1", b.input, 4, 3, stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2))
    x = b.relu6("r6", b.batchnorm("bn", x))
    y = b.conv2d("dw", x, 4, 3, padding=1, groups=4, bias=False)
    y = b.hardtanh("ht", y, -0.5, 1.5)
    x = b.add("add", x, y)
    p = b.maxpool2d("mp", x, 3, stride=2, padding=1, dilation=1, ceil_mode=True)
    q = b.avgpool2d("ap", x, 2, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    r = b.avgpool2d("ap2", x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
    x = b.concat("cat", [p, q, r])
    x = b.maxpool2d("mp2", x, 2, stride=1, dilation=(1, 2))
    x = b.act_quant("aq", b.relu("relu", x), 3, clip=1.0)
    g = b.linear("fc_gap", b.flatten("gflat", b.global_avgpool("gap", x)), 5)
    f = b.linear("fc", b.flatten("flat", x), 5, bias=False)
    x = b.log_softmax("lsm", b.add("sum", f, g))
    model = b.build(x, weight_format="int6/ch")
    save_model(model, tmp_path / "ops.h5")
    graph, _, params = naive_read_model(tmp_path / "ops.h5")
    xin = np.random.default_rng(5).standard_normal((3, 2, 9, 9))
    want = naive_forward(graph, params, xin)
    got = load_model(tmp_path / "ops.h5").forward(xin, dtype=np.float64, fold_bn=False)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_axis_other_than_zero_and_big_endian_third_party(tmp_path):
    m = small_model("fp32")
    w = m.params["fc.weight"].decode()
    m.params["fc.weight"] = parse_format("int8/ch").encode(w, axis=1)
    save_model(m, tmp_path / "m.h5")
    m2 = load_model(tmp_path / "m.h5")
    assert m2.params["fc.weight"].axis == 1 and m2.params["fc.weight"].scale.shape == (64,)
    assert_same_model(m, m2)
    # a writer on a big-endian machine, fixed-length strings, no checksum
    m = small_model("q8.8")
    save_model(m, tmp_path / "be.h5")
    with h5py.File(tmp_path / "be.h5", "r+") as f:
        del f.attrs["sha256"]
        f.attrs["format"] = np.bytes_("numharden-model")
        g = f["params/conv1.weight"]
        codes = g["codes"][()]
        del g["codes"]
        g.create_dataset("codes", data=codes.astype(">i2"))
        g.attrs["format"] = np.bytes_("Q8.8")  # case-insensitive
        text = f["graph"][()]
        del f["graph"]
        f["graph"] = np.bytes_(text)
    m2 = load_model(tmp_path / "be.h5")
    np.testing.assert_array_equal(m2.params["conv1.weight"].codes, m.params["conv1.weight"].codes)
    assert m2.params["conv1.weight"].codes.dtype == np.dtype("=i2")


def test_meta_numpy_values_become_json(tmp_path):
    m = small_model()
    m.meta["training"] = {"acc": np.float64(0.75), "epochs": np.int64(3), "hist": np.arange(3)}
    m2 = load_model(save_model(m, tmp_path / "m.h5"))
    assert m2.meta["training"] == {"acc": 0.75, "epochs": 3, "hist": [0, 1, 2]}
    assert type(m2.meta["training"]["epochs"]) is int


def test_atomic_save_replaces_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    first = small_model(seed=0)
    save_model(first, path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~io_hdf5._umask())
    before = path.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(io_hdf5, "write_tensor", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(small_model(seed=1), path)
    assert path.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]  # no temp file left
    monkeypatch.undo()
    second = small_model(seed=1)
    save_model(second, path)
    assert_same_model(load_model(path), second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_save_errors(tmp_path):
    m = small_model()
    with pytest.raises(ConfigError, match="expected a numharden Model, found dict"):
        save_model({}, tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        save_model(m, tmp_path / "no" / "x.h5")
    m.meta["training"] = {"loss": float("nan")}
    with pytest.raises(ConfigError, match="model.meta cannot be stored as JSON"):
        save_model(m, tmp_path / "x.h5")
    m.meta["training"] = {"f": object()}
    with pytest.raises(ConfigError, match="object is not JSON-serialisable"):
        save_model(m, tmp_path / "x.h5")
    m = small_model("fp32")
    codes = m.params["fc.weight"].codes.copy()
    codes[1, 2] = np.inf
    m.params["fc.weight"] = StoredTensor(codes, parse_format("fp32"))
    with pytest.raises(FormatError, match=r"parameter 'fc.weight': fp32 codes hold 1 NaN/Inf "
                                          r"value\(s\) \(first at index \(1, 2\)\)"):
        save_model(m, tmp_path / "x.h5")
    m = small_model("int4")
    m.params["fc.weight"].codes[0, 0] = -100  # an invalid code written in place
    with pytest.raises(FormatError, match=r"int4 codes must lie in \[-8, 7\]"):
        save_model(m, tmp_path / "x.h5")
    m = small_model()
    m.meta["class_names"] = ["a", "b"]
    with pytest.raises(FormatError, match="lists 2 names but the network has 3 outputs"):
        save_model(m, tmp_path / "x.h5")
    m = small_model()
    m.params["stray.weight"] = m.params["fc.bias"]
    with pytest.raises(FormatError, match=r"\['stray.weight'\] are not used by any node"):
        save_model(m, tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []


def test_builtin_names_and_resolution(tmp_path, monkeypatch):
    names = builtin_names()
    assert names == sorted(names)
    for name in names:
        assert resolve_model_path(name).is_file()
    with pytest.raises(ConfigError, match="not a built-in model name; built-in models: ") as ei:
        load_model("no-such-model")
    assert ", ".join(names) in str(ei.value) or "none installed" in str(ei.value)
    with pytest.raises(ConfigError, match="is a directory"):
        load_model(tmp_path)
    # a name resolves through numharden_weights.path(); a file path wins over a name
    fake = tmp_path / "w"
    fake.mkdir()
    save_model(small_model(), fake / "tiny-test.h5")

    class FakeWeights:
        @staticmethod
        def names():
            return ["tiny-test"]

        @staticmethod
        def path(name):
            return fake / f"{name}.h5"

    monkeypatch.setattr(io_hdf5, "_weights_module", lambda: FakeWeights)
    assert resolve_model_path("tiny-test") == fake / "tiny-test.h5"
    assert load_model("tiny-test").meta["arch"] == "small"
    with pytest.raises(ConfigError, match="built-in models: tiny-test"):
        load_model("tiny")
