"""Corrupted and invalid model files: each must fail with one clear, file-naming error."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from numharden.errors import DTypeError, FormatError, MissingTensorError, ShapeError
from numharden.io import content_sha256, load_model, save_model
from test_io import small_model


@pytest.fixture
def saved(tmp_path):
    """A valid model file: conv int4/ch, bn fp32, act_quant, linear int4/ch."""
    return save_model(small_model("int4/ch"), tmp_path / "model.h5")


def edit(path, fn, *, rehash=True):
    """Apply ``fn(f)`` to the open file and, where the edited file still can be
    checksummed, recompute the checksum, so that the check under test fails, not the
    checksum (which load_model verifies last)."""
    with h5py.File(path, "r+") as f:
        fn(f)
        if rehash:
            try:
                f.attrs["sha256"] = content_sha256(f)
            except (FormatError, MissingTensorError):
                pass
    return path


def edit_json(path, name, fn):
    def apply(f):
        d = json.loads(f[name][()])
        fn(d)
        del f[name]
        f[name] = json.dumps(d)
    return edit(path, apply)


def replace(f, dataset, data):
    del f[dataset]
    f[dataset] = data


def node(d, name):
    return next(n for n in d["nodes"] if n["name"] == name)


def expect(exc, path, *fragments):
    with pytest.raises(exc) as ei:
        load_model(path)
    msg = str(ei.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


# -- the file itself -------------------------------------------------------------------------
def test_not_hdf5(tmp_path):
    p = tmp_path / "m.h5"
    p.write_text("this is a text file, not a model\n" * 20)
    expect(FormatError, p, "is not an HDF5 file")


def test_truncated(saved):
    data = saved.read_bytes()
    for keep in (len(data) // 2, 600):
        saved.write_bytes(data[:keep])
        expect(FormatError, saved, "is truncated or corrupt")


def test_flipped_byte_in_codes_detected_by_checksum(saved):
    with h5py.File(saved, "r") as f:
        offset = f["params/fc.weight/codes"].id.get_offset()
    data = bytearray(saved.read_bytes())
    data[offset + 5] ^= 0x01  # a valid int4 code stays in range: only the checksum sees it
    saved.write_bytes(bytes(data))
    expect(FormatError, saved, "content checksum mismatch", "corrupted after it was written")


def test_flipped_byte_without_checksum_out_of_range(saved):
    edit(saved, lambda f: f.attrs.__delitem__("sha256"), rehash=False)
    with h5py.File(saved, "r") as f:
        offset = f["params/conv1.weight/codes"].id.get_offset()
    data = bytearray(saved.read_bytes())
    data[offset] = 0x40  # int4 code 64
    saved.write_bytes(bytes(data))
    expect(FormatError, saved, "parameter 'conv1.weight'", "int4/ch codes must lie in [-8, 7]",
           "found [-7, 64]")


def test_flipped_superblock(saved):
    data = bytearray(saved.read_bytes())
    data[0] ^= 0xFF
    saved.write_bytes(bytes(data))
    expect(FormatError, saved, "is not an HDF5 file")


def test_edit_without_rehash_fails_checksum(saved):
    edit_json(saved, "meta", lambda d: d.update(arch="other"))  # edit_json rehashes ...
    load_model(saved)
    with h5py.File(saved, "r+") as f:  # ... a raw edit does not
        replace(f, "meta", json.dumps({"arch": "tampered"}))
    expect(FormatError, saved, "content checksum mismatch")


# -- header and versioning --------------------------------------------------------------------
def test_header_errors(saved):
    edit(saved, lambda f: f.attrs.__setitem__("format_version", 2))
    expect(FormatError, saved, "written by a newer numharden: format_version 2 > 1",
           "upgrade numharden")
    edit(saved, lambda f: f.attrs.__setitem__("format_version", 0))
    expect(FormatError, saved, "format_version 0 is not valid")
    edit(saved, lambda f: f.attrs.__setitem__("format_version", "1"))
    expect(FormatError, saved, "'format_version' must be an integer")
    edit(saved, lambda f: f.attrs.__setitem__("format", "keras"))
    expect(FormatError, saved, "must be 'numharden-model', found 'keras'", "not a numharden model")


# -- missing objects --------------------------------------------------------------------------
@pytest.mark.parametrize("victim,fragment", [
    ("graph", "dataset /graph is missing"),
    ("meta", "dataset /meta is missing"),
    ("params", "group /params is missing"),
    ("params/fc.bias", "parameter 'fc.bias' (linear bias of node 'fc') is missing"),
    ("params/conv1.weight/scale", "dataset scale is missing; format int4/ch needs a float32 scale"),
    ("params/conv1.weight/codes", "dataset /params/conv1.weight/codes is missing"),
])
def test_missing(saved, victim, fragment):
    edit(saved, lambda f: f.__delitem__(victim))
    expect(MissingTensorError, saved, fragment)


def test_unused_and_unknown_members(saved):
    edit(saved, lambda f: f.copy("params/fc.bias", "params/fc.bais"))
    expect(FormatError, saved, "['fc.bais'] are not used by any node")
    edit(saved, lambda f: f.__delitem__("params/fc.bais"))
    edit(saved, lambda f: f.copy("params/fc.weight/scale", "params/fc.weight/scales"))
    expect(FormatError, saved, "parameter 'fc.weight': unknown member(s) ['scales']")
    edit(saved, lambda f: f.__delitem__("params/fc.weight/scales"))
    edit(saved, lambda f: f.__setitem__("params/fc.bias/scale", np.float32(1)))
    expect(FormatError, saved, "format fp32 has no scale, but the group holds one")


# -- graph JSON --------------------------------------------------------------------------------
def test_graph_json_errors(saved):
    edit(saved, lambda f: replace(f, "graph", "{not json"))
    expect(FormatError, saved, "/graph is not valid JSON")
    path = save_model(small_model(), saved)
    cases = [
        (lambda d: node(d, "relu1").update(op="gelu"), "node 'relu1' has unknown op 'gelu'"),
        (lambda d: node(d, "conv1")["attrs"].pop("groups"),
         "node 'conv1' (conv2d) attrs: missing keys ['groups']"),
        (lambda d: node(d, "conv1")["attrs"].update(stide=[1, 1]), "unknown keys ['stide']"),
        (lambda d: node(d, "conv1")["attrs"].update(kernel=[3]),
         "attribute 'kernel' must be a list of 2 integers >= 1, found [3]"),
        (lambda d: node(d, "pool1")["attrs"].update(ceil_mode=0),
         "attribute 'ceil_mode' must be true or false, found 0"),
        (lambda d: node(d, "aq1")["attrs"].update(bits=17), "must be an integer in [1, 16]"),
        (lambda d: node(d, "pool1")["attrs"].update(padding=[2, 2, 0, 0]),
         "padding [2, 2, 0, 0] exceeds half the kernel"),
        (lambda d: node(d, "conv1")["attrs"].update(groups=3), "groups=3 must divide"),
        (lambda d: node(d, "fc").update(inputs=["nowhere"]), "reads 'nowhere'"),
        (lambda d: node(d, "fc").pop("params"), "missing keys ['params']"),
        (lambda d: d.update(output="gone"), "graph output 'gone' is not a node"),
        (lambda d: d.update(input_shape=[1, 8]), "input_shape must be [C, H, W]"),
        (lambda d: d.update(version=2), "/graph: missing keys [], unknown keys ['version']"),
        (lambda d: node(d, "fc")["params"].update(bias=7), "params must map role strings"),
    ]
    original = path.read_bytes()
    for mutate, fragment in cases:
        path.write_bytes(original)
        edit_json(path, "graph", mutate)
        expect(FormatError, path, fragment)
    path.write_bytes(original)
    edit(path, lambda f: replace(f, "graph", '{"a": NaN}'))
    expect(FormatError, path, "NaN is not allowed in JSON")


def test_meta_errors(saved):
    original = saved.read_bytes()
    cases = [
        (lambda d: d.update(class_names=["a"]), "lists 1 names but the network has 3 outputs"),
        (lambda d: d.update(normalization={"mean": [0.1, 0.2], "std": [1.0]}),
         "normalization mean must list one finite number (the input has one channel), found "
         "[0.1, 0.2]"),
        (lambda d: d.update(normalization={"mean": [0.1], "std": [0.0]}),
         "normalization std must be > 0"),
        (lambda d: d.update(arch=5), "meta arch must be a string"),
    ]
    for mutate, fragment in cases:
        saved.write_bytes(original)
        edit_json(saved, "meta", mutate)
        expect(FormatError, saved, fragment)
    saved.write_bytes(original)
    edit(saved, lambda f: replace(f, "meta", "[1, 2]"))
    expect(FormatError, saved, "/meta must be a JSON object, found list")


# -- parameters --------------------------------------------------------------------------------
def test_shape_mismatch_conv_weight_vs_channels(saved):
    def widen(f):  # 5 output channels in a node that declares 4
        g = f["params/conv1.weight"]
        replace(g, "codes", np.zeros((5, 1, 3, 3), np.int8))
        replace(g, "scale", np.ones(5, np.float32))
    edit(saved, widen)
    expect(ShapeError, saved, "node 'conv1' (conv2d) has in_channels=1, out_channels=4, groups=1, "
           "kernel=[3, 3], which needs its weight 'conv1.weight' of shape (4, 1, 3, 3), but that "
           "tensor has shape (5, 1, 3, 3)")


def test_node_attributes_checked_against_own_weight_first(saved):
    """Item 11: out_channels that contradict the conv's own weight are reported at the conv,
    not at a downstream node whose input width then disagrees."""
    edit_json(saved, "graph", lambda d: node(d, "conv1")["attrs"].update(out_channels=5))
    expect(ShapeError, saved, "node 'conv1' (conv2d) has in_channels=1, out_channels=5",
           "needs its weight 'conv1.weight' of shape (5, 1, 3, 3), but that tensor has shape "
           "(4, 1, 3, 3)")


def test_misspelled_parameter_reference_suggests_the_close_match(saved):
    edit_json(saved, "graph", lambda d: node(d, "fc")["params"].update(bias="fc.biass"))
    expect(MissingTensorError, saved, "parameter 'fc.biass' (linear bias of node 'fc') is "
           "missing: no group /params/fc.biass; did you mean 'fc.bias' (stored, but no node "
           "uses it)?")


def test_malformed_sha256_is_called_malformed(saved):
    edit(saved, lambda f: f.attrs.__setitem__("sha256", "abc"), rehash=False)
    expect(FormatError, saved, "'sha256' must be 64 hexadecimal digits, found 'abc'",
           "malformed", "docs/FORMAT.md section 7")


def test_cycle_is_called_a_cycle(saved):
    def loop(d):  # relu1 reads aq1, which (via bn1 <- relu1?) -- make bn1 read relu1
        node(d, "bn1")["inputs"] = ["relu1"]
    edit_json(saved, "graph", loop)
    expect(FormatError, saved, "the graph has a cycle: ", "bn1 -> relu1 -> bn1", "acyclic")


def test_out_of_order_nodes_without_cycle(saved):
    def swap(d):
        i, j = (next(k for k, n in enumerate(d["nodes"]) if n["name"] == m) for m in ("bn1", "relu1"))
        d["nodes"][i], d["nodes"][j] = d["nodes"][j], d["nodes"][i]
    edit_json(saved, "graph", swap)
    expect(FormatError, saved, "node 'relu1' reads 'bn1', which comes later", "topological order")


def test_scale_shape_mismatch(saved):
    edit(saved, lambda f: replace(f["params/conv1.weight"], "scale", np.ones(3, np.float32)))
    expect(ShapeError, saved, "parameter 'conv1.weight': scale has shape (3,), expected (4,)")


@pytest.mark.parametrize("member,data,fragment", [
    ("codes", np.zeros((4, 1, 3, 3), np.int16), "codes has dtype int16, expected int8"),
    ("codes", np.zeros((4, 1, 3, 3), np.uint8), "codes has dtype uint8, expected int8"),
    ("scale", np.ones(4, np.float64), "scale has dtype float64, expected float32"),
])
def test_dtype_mismatch(saved, member, data, fragment):
    edit(saved, lambda f: replace(f["params/conv1.weight"], member, data))
    expect(DTypeError, saved, "parameter 'conv1.weight'", fragment)


def test_value_errors(tmp_path):
    m = small_model("uint4")
    cases = [
        ("fc.weight", "scale", lambda a: np.float32(np.nan), "scale must be finite and > 0"),
        ("fc.weight", "scale", lambda a: np.float32(0), "scale must be finite and > 0"),
        ("fc.weight", "zero_point", lambda a: np.int32(16), "zero_point must lie in [0, 15]"),
        ("fc.weight", "codes", lambda a: a | np.uint8(0x10), "uint4 codes must lie in [0, 15]"),
        ("conv1.bias", "codes", lambda a: np.where(np.arange(a.size) == 2, np.inf, a)
         .astype(np.float32), "fp32 codes hold 1 NaN/Inf value(s) (first at index (2,))"),
        ("aq1.clip", "codes", lambda a: -a, "act_quant node 'aq1': clip 'aq1.clip' must be "
         "finite and > 0"),
        ("bn1.running_var", "codes", lambda a: a - 10, "running_var must be >= 0"),
    ]
    for pname, member, change, fragment in cases:
        path = save_model(m, tmp_path / "m.h5")
        edit(path, lambda f: replace(f[f"params/{pname}"], member, change(
            f[f"params/{pname}/{member}"][()])))
        expect(FormatError, path, fragment)


def test_format_attribute_errors(saved):
    original = saved.read_bytes()
    cases = [
        (lambda g: g.attrs.__setitem__("format", "int9"), "unknown number format 'int9'"),
        (lambda g: g.attrs.__delitem__("format"), "attribute 'format' (a string"),
        (lambda g: g.attrs.__delitem__("axis"), "per-channel format int4/ch needs an integer "
         "attribute 'axis'"),
        (lambda g: g.attrs.__setitem__("axis", 4), "'axis' must be an integer in [0, 4)"),
        (lambda g: g.attrs.__setitem__("format", "int4"), "format int4 is per-tensor but the "
         "group has an 'axis' attribute"),
    ]
    for mutate, fragment in cases:
        saved.write_bytes(original)
        edit(saved, lambda f: mutate(f["params/conv1.weight"]))
        expect(FormatError, saved, "parameter 'conv1.weight'", fragment)


def test_bf16_and_fixed_point_values(tmp_path):
    path = save_model(small_model("bf16"), tmp_path / "b.h5")
    edit(path, lambda f: replace(f["params/fc.weight"], "codes",
                                 np.full((3, 64), 0x7FC0, np.uint16)))  # bf16 quiet NaN
    expect(FormatError, path, "bf16 codes hold 192 NaN/Inf value(s)")
    path = save_model(small_model("q3.2"), tmp_path / "q.h5")
    edit(path, lambda f: replace(f["params/fc.weight"], "codes", np.full((3, 64), 16, np.int8)))
    expect(FormatError, path, "q3.2 codes must lie in [-16, 15]", "found [16, 16]")


def test_subsample_pad_round_trip_and_attribute_errors(tmp_path):
    """Issue 9 item 14: option-A shortcuts are a parameter-free op of the format."""
    from numharden.models import build
    m = build("resnet20a", input_shape=(3, 8, 8), num_classes=4, seed=2)
    path = save_model(m, tmp_path / "a.h5")
    back = load_model(path)
    sp = [n for n in back.graph.nodes if n.op == "subsample_pad"]
    assert [(n.name, n.attrs) for n in sp] == [
        ("layer2.0.shortcut", {"stride": [2, 2], "pad_channels": [8, 8]}),
        ("layer3.0.shortcut", {"stride": [2, 2], "pad_channels": [16, 16]})]
    assert not any("downsample" in p for p in back.params)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x), m.forward(x))
    original = path.read_bytes()
    for mutate, exc, fragment in [
            (lambda d: node(d, "layer2.0.shortcut")["attrs"].update(pad_channels=[-1, 8]),
             FormatError, "attribute 'pad_channels' must be a list of 2 integers >= 0"),
            (lambda d: node(d, "layer2.0.shortcut")["attrs"].update(stride=[0, 2]),
             FormatError, "attribute 'stride' must be a list of 2 integers >= 1"),
            (lambda d: node(d, "layer2.0.shortcut")["attrs"].update(pad_channels=[8, 7]),
             ShapeError, "add node 'layer2.0.add' needs two inputs of equal shape")]:
        path.write_bytes(original)
        edit_json(path, "graph", mutate)
        expect(exc, path, fragment)
