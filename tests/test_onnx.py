"""ONNX import/export (numharden.io.from_onnx / to_onnx) and safetensors import.

References: PyTorch's own logits for ONNX files PyTorch exported (fixtures made by
tests/golden/make_onnx.py), ONNX Runtime running the very file numharden exported or
imported, and the stored codes themselves (round trip must be bit-identical).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from numharden.errors import FormatError, MissingTensorError, NumhardenError, ShapeError  # noqa: E402
from numharden.faults import FaultInjector, FaultModel  # noqa: E402
from numharden.io import from_onnx, from_safetensors, to_onnx  # noqa: E402
from numharden.models import build  # noqa: E402

FIXTURES = Path(__file__).parent / "golden" / "onnx"
CASES = [(a, m) for a in ("lenet5", "resnet20", "resnet20a", "mobilenetv2", "densenet")
         for m in ("float", "qdq")]


def ort_run(path, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def assert_float_close(y, ref):
    """Equal to float32 rounding: the two engines sum in different orders."""
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


# -- PyTorch -> ONNX -> numharden ------------------------------------------------------------
@pytest.mark.parametrize("arch,mode", CASES)
def test_torch_exported_fixture(arch, mode):
    """PyTorch's logits, to float rounding. QDQ files quantize activations to 8 bits after
    every ReLU; a pre-activation within an ulp of a rounding boundary could round to the
    neighbouring code in one engine (a logit moves by ~1e-3 then): none does on these
    inputs, so the float tolerance applies to both modes."""
    m = from_onnx(FIXTURES / f"{arch}_{mode}.onnx")
    d = np.load(FIXTURES / f"{arch}_{mode}.npz")
    assert_float_close(m.forward(d["x"]), d["logits"])
    fmts = {t.fmt.spec for t in m.params.values()}
    if mode == "float":
        assert fmts == {"fp32"}
    else:
        want = {"lenet5": {"uint8"}, "resnet20": {"int8/ch"}, "resnet20a": {"int8/ch"}, "mobilenetv2": {"int8/ch", "uint8"},
                "densenet": {"int8"}}[arch]
        assert want <= fmts and any(n.op == "act_quant" for n in m.graph.nodes)
    # PyTorch's state_dict names survive for conv weights
    assert any(k.endswith(".weight") and k.startswith(("conv1", "stem", "conv0")) for k in m.params)


# -- numharden -> ONNX -> ONNX Runtime -------------------------------------------------------
ZOO = [("lenet5", (1, 28, 28), fmt, ab) for fmt, ab in
       (("fp32", None), ("fp16", 4), ("bf16", None), ("int8", None), ("int8/ch", 8),
        ("uint8", None), ("uint8/ch", 4), ("int4/ch", 4), ("q4.12", None))]
ZOO += [("resnet20", (3, 8, 8), "int8/ch", None), ("resnet20", (3, 8, 8), "int4/ch", 4),
        ("mobilenetv2", (3, 8, 8), "uint8/ch", None), ("mobilenetv2", (3, 8, 8), "bf16", 8),
        ("densenet", (3, 8, 8), "int8", 4), ("densenet", (3, 8, 8), "fp16", None),
        ("resnet18", (3, 8, 8), "int8/ch", None), ("resnet20a", (3, 8, 8), "int8/ch", 8)]


def _faulted(arch, shape, fmt, abits, seed=3):
    m = build(arch, input_shape=shape, num_classes=10, weight_format=fmt, abits=abits, seed=seed)
    weights = [n.params["weight"] for n in m.graph.nodes if n.op in ("conv2d", "linear")]
    bits = "mantissa" if m.params[weights[0]].fmt.kind == "float" else None
    inj = FaultInjector(m, FaultModel(rate=2e-3, include=tuple(weights), bits=bits))
    applied = inj.inject(np.random.default_rng(seed))
    assert len(applied) > 0
    return m


@pytest.mark.parametrize("arch,shape,fmt,abits", ZOO)
def test_export_runs_in_onnxruntime(tmp_path, arch, shape, fmt, abits):
    m = _faulted(arch, shape, fmt, abits)
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    ref = m.forward(x)
    for qdq in (True, False):
        path = tmp_path / f"m{qdq}.onnx"
        proto = to_onnx(m, path, qdq=qdq)
        onnx.checker.check_model(proto)
        n_dq = sum(n.op_type == "DequantizeLinear" for n in proto.graph.node)
        assert (n_dq > 0) == (qdq and fmt in ("int8", "int8/ch", "uint8", "uint8/ch"))
        assert_float_close(ort_run(path, x), ref)


@pytest.mark.parametrize("arch,shape,fmt,abits", ZOO[:9] + ZOO[10:12] + ZOO[-1:])
def test_round_trip_keeps_codes(tmp_path, arch, shape, fmt, abits):
    m = _faulted(arch, shape, fmt, abits)
    for qdq in (True, False):
        to_onnx(m, tmp_path / "m.onnx", qdq=qdq)
        back = from_onnx(tmp_path / "m.onnx")
        assert [(n.name, n.op, n.inputs, n.params) for n in back.graph.nodes] == \
            [(n.name, n.op, n.inputs, n.params) for n in m.graph.nodes]
        assert back.checksum() == m.checksum()
        for name, t in m.params.items():
            b = back.params[name]
            assert b.fmt == t.fmt and b.codes.dtype == t.codes.dtype
            assert np.array_equal(b.raw(), t.raw()), name
            for attr in ("scale", "zero_point"):
                assert (getattr(t, attr) is None) == (getattr(b, attr) is None)
                if getattr(t, attr) is not None:
                    assert np.array_equal(getattr(t, attr), getattr(b, attr))


# -- hand-written ONNX, as ONNX Runtime's quantizer lays it out ------------------------------
def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def _model(nodes, inits, shape=(1, 3, 6, 6), out="y", out_shape=None):
    g = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        ["N", *shape[1:]])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_qdq_per_axis_int8_uint8_activation_vs_onnxruntime(tmp_path):
    """int8 per-axis weight codes + DequantizeLinear (ORT quantizer layout), SAME_UPPER
    padding, stride 2, uint8 activation QDQ after ReLU, Gemm with transB=0 through a
    Squeeze, MatMul + Add bias, constant folding of a Transpose/Mul chain."""
    rng = np.random.default_rng(5)
    wq = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    ws = rng.uniform(0.001, 0.01, 4).astype(np.float32)
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", auto_pad="SAME_UPPER",
                         strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "as", "az"], ["rq"], name="aq"),
        helper.make_node("DequantizeLinear", ["rq", "as", "az"], ["rd"], name="adq"),
        helper.make_node("GlobalAveragePool", ["rd"], ["g"], name="gap"),
        helper.make_node("Squeeze", ["g", "axes"], ["f"], name="squeeze"),
        helper.make_node("Transpose", ["m0"], ["m1"], perm=[1, 0]),
        helper.make_node("Mul", ["m1", "two"], ["m2"]),
        helper.make_node("Gemm", ["f", "m2", "gb"], ["h"], name="fc1"),
        helper.make_node("MatMul", ["h", "mm"], ["hm"], name="fc2"),
        helper.make_node("Add", ["hm", "mb"], ["y"], name="fc2_bias"),
    ]
    inits = [_init("wq", wq), _init("ws", ws), _init("wz", np.zeros(4, np.int8)),
             _init("b", rng.standard_normal(4).astype(np.float32)),
             _init("as", np.float32(0.02)), _init("az", np.uint8(0)),
             _init("axes", np.array([2, 3], np.int64)),
             _init("m0", rng.standard_normal((5, 4)).astype(np.float32)),
             _init("two", np.float32(2)), _init("gb", rng.standard_normal(5).astype(np.float32)),
             _init("mm", rng.standard_normal((5, 3)).astype(np.float32)),
             _init("mb", rng.standard_normal(3).astype(np.float32))]
    path = tmp_path / "q.onnx"
    onnx.save(_model(nodes, inits, shape=(1, 3, 7, 7)), path)
    m = from_onnx(path)
    assert m.params["conv.weight"].fmt.spec == "int8/ch"
    assert np.array_equal(m.params["conv.weight"].codes, wq)
    assert [n.op for n in m.graph.nodes] == ["conv2d", "relu", "act_quant", "global_avgpool",
                                             "flatten", "linear", "linear"]
    x = rng.standard_normal((4, 3, 7, 7)).astype(np.float32)
    assert_float_close(m.forward(x), ort_run(path, x))


def test_uint8_weights_and_int8_zero_point_offset(tmp_path):
    """uint8 codes with zero points stay uint8; int8 with a non-zero zero point becomes
    uint8 codes + 128 (same values)."""
    rng = np.random.default_rng(6)
    w1 = rng.integers(0, 256, (4, 3, 1, 1)).astype(np.uint8)
    w2 = rng.integers(-128, 128, (2, 4, 1, 1)).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["w1q", "s1", "z1"], ["w1"], axis=0),
             helper.make_node("DequantizeLinear", ["w2q", "s2", "z2"], ["w2"]),
             helper.make_node("Conv", ["x", "w1"], ["c1"], name="a"),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], name="b"),
             helper.make_node("Flatten", ["c2"], ["y"], name="flat")]
    inits = [_init("w1q", w1), _init("s1", np.full(4, 0.01, np.float32)),
             _init("z1", np.array([0, 3, 128, 255], np.uint8)), _init("w2q", w2),
             _init("s2", np.float32(0.05)), _init("z2", np.int8(-7))]
    path = tmp_path / "u.onnx"
    onnx.save(_model(nodes, inits, shape=(1, 3, 2, 2)), path)
    m = from_onnx(path)
    a, b = m.params["a.weight"], m.params["b.weight"]
    assert a.fmt.spec == "uint8/ch" and np.array_equal(a.codes, w1)
    assert b.fmt.spec == "uint8" and np.array_equal(b.codes.astype(int), w2.astype(int) + 128)
    assert int(b.zero_point) == 121
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    assert_float_close(m.forward(x), ort_run(path, x))


# -- refusals ---------------------------------------------------------------------------------
def test_unsupported_ops_listed_in_one_message(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("LeakyRelu", ["c"], ["l"], name="leaky_a"),
             helper.make_node("Sigmoid", ["l"], ["s"], name="gate"),
             helper.make_node("LeakyRelu", ["s"], ["l2"], name="leaky_b"),
             helper.make_node("Flatten", ["l2"], ["y"], name="flat")]
    path = tmp_path / "bad.onnx"
    onnx.save(_model(nodes, [_init("w", np.ones((2, 3, 1, 1), np.float32))]), path)
    with pytest.raises(FormatError) as e:
        from_onnx(path)
    msg = str(e.value)
    assert "LeakyRelu (leaky_a, leaky_b)" in msg and "Sigmoid (gate)" in msg
    assert "\n" not in msg and str(path) in msg


def test_negative_activation_quantization_refused(tmp_path):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="inq"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="indq"),
             helper.make_node("Flatten", ["d"], ["y"], name="flat")]
    path = tmp_path / "neg.onnx"
    onnx.save(_model(nodes, [_init("s", np.float32(0.1)), _init("z", np.uint8(128))]), path)
    with pytest.raises(FormatError, match="inq.*may be negative.*graph input"):
        from_onnx(path)


def test_symbolic_input_needs_shape(tmp_path):
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"], name="f")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "sym.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(ShapeError, match="input_shape"):
        from_onnx(path)
    assert from_onnx(path, input_shape=(3, 4, 4)).graph.input_shape == (3, 4, 4)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("o") / "lenet.onnx"
    to_onnx(build("lenet5", weight_format="int8/ch", abits=4), path)
    return path.read_bytes()


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_fail_with_numharden_errors(tmp_path, small_onnx, data):
    """Truncated or byte-corrupted files import or raise a NumhardenError, nothing else."""
    blob = bytearray(small_onnx)
    cut = data.draw(st.integers(0, len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)),
                               max_size=4))
    for pos, xor in flips:
        blob[pos] ^= xor
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob))
    try:
        from_onnx(path)
    except NumhardenError as e:
        assert "\n" not in str(e)


def test_cli_import_export_and_errors(tmp_path):
    from typer.testing import CliRunner

    from numharden_cli.app import app
    runner = CliRunner()
    h5, onx = tmp_path / "m.h5", tmp_path / "m.onnx"
    r = runner.invoke(app, ["export", "-o", str(onx), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", str(onx), "-o", str(h5), "--classes",
                            "a,b,c,d,e,f,g,h,i,j", "--mean", "0.5", "--std", "0.25"])
    assert r.exit_code == 0, r.output
    from numharden.io import load_model
    m = load_model(h5)
    assert m.meta["class_names"][0] == "a" and m.meta["normalization"]["std"] == [0.25]
    for args, words in [(["import", str(tmp_path / "w.pt"), "-o", str(h5)], "never"),
                        (["import", str(tmp_path / "none.onnx"), "-o", str(h5)], "no such"),
                        (["import", str(onx), "-o", str(h5), "--classes", "a,b"], "10 outputs"),
                        (["import", str(onx), "-o", str(h5), "--input", "3x3"], "CxHxW")]:
        r = runner.invoke(app, args)
        err = r.stderr if r.stderr else r.output
        assert r.exit_code == 2 and err.startswith("error:") and words in err, err
        assert len(err.strip().splitlines()) == 1


# -- safetensors ------------------------------------------------------------------------------
def test_safetensors_state_dict(tmp_path):
    sft = pytest.importorskip("safetensors.numpy")
    src = build("resnet20", input_shape=(3, 8, 8), num_classes=10, seed=9)
    rng = np.random.default_rng(1)
    tensors = {k: v for k, v in src.float_params().items() if not k.endswith(".clip")}
    for k in tensors:
        if k.endswith("running_var"):
            tensors[k] = rng.uniform(0.5, 1.5, tensors[k].shape).astype(np.float32)
    tensors["bn1.num_batches_tracked"] = np.array(7, np.int64)  # PyTorch's buffer, ignored
    path = tmp_path / "w.safetensors"
    sft.save_file(tensors, str(path))
    m = from_safetensors(path, "resnet20", num_classes=10, input_shape=(3, 8, 8))
    for k, v in tensors.items():
        if k in m.params:
            assert np.array_equal(m.params[k].decode(), v)
    q = from_safetensors(path, "resnet20", num_classes=10, input_shape=(3, 8, 8),
                         weight_format="int8/ch")
    w = q.params["layer1.0.conv1.weight"]
    assert w.fmt.spec == "int8/ch"
    assert np.array_equal(w.codes, w.fmt.encode(tensors["layer1.0.conv1.weight"]).codes)
    with pytest.raises(MissingTensorError, match="missing.*fc.weight"):
        del tensors["fc.weight"]
        sft.save_file(tensors, str(path))
        from_safetensors(path, "resnet20", num_classes=10, input_shape=(3, 8, 8))
    with pytest.raises(FormatError, match="safetensors"):
        (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
        from_safetensors(tmp_path / "bad.safetensors", "resnet20")


def test_activation_qdq_after_maxpool_of_relu(tmp_path):
    """uint8 zero point 128 on a non-negative tensor (ReLU -> MaxPool): 7-bit act_quant."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["q"], name="aq"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="adq"),
             helper.make_node("Flatten", ["d"], ["y"], name="flat")]
    path = tmp_path / "mp.onnx"
    onnx.save(_model(nodes, [_init("s", np.float32(0.01)), _init("z", np.uint8(128))]), path)
    m = from_onnx(path)
    aq = m.graph["aq"]
    assert aq.op == "act_quant" and aq.attrs["bits"] == 7
    x = np.random.default_rng(2).standard_normal((5, 3, 6, 6)).astype(np.float32)
    assert_float_close(m.forward(x), ort_run(path, x))


def test_cli_import_safetensors(tmp_path):
    sft = pytest.importorskip("safetensors.numpy")
    from typer.testing import CliRunner

    from numharden.io import load_model
    from numharden_cli.app import app
    src = build("lenet5", num_classes=10, seed=4)
    path = tmp_path / "w.safetensors"
    sft.save_file({k: v for k, v in src.float_params().items()}, str(path))
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(app, ["import", str(path), "--arch", "lenet5", "--classes", "10",
                                 "--input", "1x28x28", "--format", "int8/ch", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert load_model(out).params["conv1.weight"].fmt.spec == "int8/ch"
    r = CliRunner().invoke(app, ["import", str(path), "-o", str(out)])
    err = r.stderr if r.stderr else r.output
    assert r.exit_code == 2 and err.startswith("error:") and "--arch" in err


def test_activation_qdq_with_fused_relu(tmp_path):
    """uint8 zero point 0 on a conv output (ONNX Runtime's Conv+Relu QDQ): the quantiser
    clamps at 0 itself, so it is an 8-bit act_quant; int8 zero point 0 there is refused."""
    w = np.random.default_rng(3).standard_normal((4, 3, 3, 3)).astype(np.float32)
    for zdtype, ok in ((np.uint8, True), (np.int8, False)):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                 helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="aq"),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="adq"),
                 helper.make_node("Flatten", ["d"], ["y"], name="flat")]
        path = tmp_path / "fused.onnx"
        onnx.save(_model(nodes, [_init("w", w), _init("s", np.float32(0.02)),
                                 _init("z", zdtype(0))]), path)
        if not ok:
            with pytest.raises(FormatError, match="aq.*may be negative.*conv2d"):
                from_onnx(path)
            continue
        m = from_onnx(path)
        assert m.graph["aq"].op == "act_quant" and m.graph["aq"].attrs["bits"] == 8
        x = np.random.default_rng(4).standard_normal((3, 3, 6, 6)).astype(np.float32)
        assert_float_close(m.forward(x), ort_run(path, x))


def test_option_a_shortcut_imports_as_one_subsample_pad():
    m = from_onnx(FIXTURES / "resnet20a_float.onnx")
    sp = [n.attrs for n in m.graph.nodes if n.op == "subsample_pad"]
    assert sp == [{"stride": [2, 2], "pad_channels": [4, 4]},
                  {"stride": [2, 2], "pad_channels": [8, 8]}]
    assert not any(n.op == "conv2d" and n.attrs["kernel"] == [1, 1] for n in m.graph.nodes)


def test_slices_and_pads_numharden_cannot_express_are_refused(tmp_path):
    def model(slice_args, pads):
        inits = [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in
                 zip(("st", "en", "ax", "sp"), slice_args)]
        inits.append(numpy_helper.from_array(np.asarray(pads, np.int64), "pads"))
        nodes = [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"], name="sl"),
                 helper.make_node("Pad", ["s", "pads"], ["y"], name="pad", mode="constant")]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
            "x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])], [helper.make_tensor_value_info(
                "y", onnx.TensorProto.FLOAT, None)], inits)
        path = tmp_path / "m.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
        return path
    big = 2 ** 62
    ok = from_onnx(model(([0, 0], [big, big], [2, 3], [2, 2]), [0, 1, 0, 0, 0, 1, 0, 0]))
    assert [(n.op, n.attrs) for n in ok.graph.nodes] == [
        ("subsample_pad", {"stride": [2, 2], "pad_channels": [1, 1]})]
    for args, pads, words in [
            (([1, 0], [big, big], [2, 3], [2, 2]), [0] * 8, "strided subsample of H and W"),
            (([0, 0], [3, big], [2, 3], [2, 2]), [0] * 8, "from 0 to the end"),
            (([0], [big], [1], [2]), [0] * 8, "strided subsample"),
            (([0, 0], [big, big], [2, 3], [2, 2]), [0, 0, 1, 0, 0, 0, 1, 0],
             "zero padding of the channel axis")]:
        with pytest.raises(FormatError, match=words):
            from_onnx(model(args, pads))
