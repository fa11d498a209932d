"""Execution plans: fused inference equals the node-by-node run, and incremental
re-evaluation (``Model.forward(reuse=...)``) equals a full forward while computing only
what a changed parameter can reach."""

import numpy as np
import pytest

from numharden.errors import MissingTensorError
from numharden.graph import executor
from numharden.models import ARCHS, build


def _model(arch, seed=0):
    m = build(arch, input_shape=(3, 16, 16), num_classes=5, abits=4 if arch != "resnet18" else None,
              weight_format="int8/ch", seed=seed)
    rng = np.random.default_rng(seed + 7)
    for name, st in m.params.items():  # non-trivial batch-norm statistics
        if name.endswith(("running_mean", "bias")) and st.fmt.kind == "float":
            st.codes[...] = rng.uniform(-0.5, 0.5, st.shape).astype(st.codes.dtype)
            st.touch()
        elif name.endswith("running_var"):
            st.codes[...] = rng.uniform(0.5, 2.0, st.shape).astype(st.codes.dtype)
            st.touch()
    return m


def _unfused(m, x):
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    folded = frozenset(bn.name for bn in m._folds.values())
    return executor.run(m.graph, xh, lambda node: m._derive(node, np.float32, True),
                        folded=folded, fuse=False).reshape(len(x), -1)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_fused_inference_equals_node_by_node(arch):
    m = _model(arch)
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(m.forward(x), _unfused(m, x))
    folded = frozenset(bn.name for bn in m._folds.values())
    plan = executor._plan(m.graph, folded, True, None, None)
    kinds = [kind for _, kind, _, _ in plan.steps]
    assert "fused" in kinds  # the check above compared something else than itself
    if arch in ("resnet20", "resnet18", "mobilenetv2"):  # residual epilogues
        assert any(kind == "fused" and extra[1] is not None
                   for _, kind, extra, _ in plan.steps)


def test_fusion_is_bit_exact_with_nonfinite_weights():
    """A NaN/Inf weight (a faulted exponent) gives the same logits fused or not."""
    m = build("resnet20", input_shape=(3, 16, 16), num_classes=5, weight_format="fp32")
    st = m.params["layer1.0.conv2.weight"]
    st.raw().reshape(-1)[[5, 77]] = [0x7F800000, 0x7FC00000]  # +Inf, NaN bit patterns
    st.touch()
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with np.errstate(all="ignore"):
        a, b = m.forward(x), _unfused(m, x)
    np.testing.assert_array_equal(a, b)
    assert not np.isfinite(a).all()


def _record(m, x, keep=None):
    outs, order = {}, []

    def observe(node, out):
        order.append(node.name)
        if keep is None or node.name in keep:
            outs[node.name] = out
    logits = m.forward(x, observe=observe)
    return logits, outs, order


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_reuse_equals_full_forward_and_computes_only_downstream(arch):
    m = _model(arch, seed=3)
    x = np.random.default_rng(4).standard_normal((3, 3, 16, 16)).astype(np.float32)
    _, outs, _ = _record(m, x)
    weights = [n for n in m.params if n.endswith("weight") and m.params[n].fmt.kind == "int"]
    rng = np.random.default_rng(5)
    for name in [weights[0], weights[len(weights) // 2], weights[-1]]:
        st = m.params[name]
        saved = st.codes.copy()
        flat = st.codes.reshape(-1)
        flat[rng.integers(flat.size, size=3)] = st.fmt.qmax  # a few saturated codes
        st.touch()
        full = m.copy().forward(x)
        computed = []
        got = m.forward(x, reuse=(outs, [name]),
                        observe=lambda node, out: computed.append(node.name))
        np.testing.assert_array_equal(got, full)
        np.testing.assert_array_equal(m.forward(x, reuse=(outs, [name])), full)  # fused
        # exactly the nodes downstream of the touched layer ran (all outputs recorded)
        owner = m.nodes_of([name]).pop()
        first = [n.name for n in m.graph.nodes].index(owner)
        downstream = {owner}
        for node in m.graph.nodes[first:]:
            if any(i in downstream for i in node.inputs):
                downstream.add(node.name)
        assert set(computed) == downstream
        st.codes[...] = saved
        st.touch()


def test_reuse_with_partial_records_recomputes_from_the_nearest_record():
    m = _model("resnet20", seed=6)
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    keep = {"layer2.0.relu1"}  # only one record: everything else comes from the input
    _, outs, _ = _record(m, x, keep)
    st = m.params["fc.weight"]
    st.codes.reshape(-1)[0] = st.fmt.qmin
    st.touch()
    computed = []
    got = m.forward(x, reuse=(outs, ["fc.weight"]),
                    observe=lambda node, out: computed.append(node.name))
    np.testing.assert_array_equal(got, m.copy().forward(x))
    assert "conv1" in computed and "fc" in computed  # the stem ran again: not recorded
    # batch-norm parameters of a folded conv make that conv dirty
    assert m.nodes_of(["layer1.0.bn1.running_var"]) == {"layer1.0.conv1"}
    assert m.nodes_of(["layer1.0.bn1.running_var"], fold_bn=False) == {"layer1.0.bn1"}
    with pytest.raises(MissingTensorError, match="not a parameter"):
        m.nodes_of(["nope.weight"])
    with pytest.raises(ValueError, match="hook"):
        m.forward(x, reuse=(outs, ["fc.weight"]), hook=lambda node, out, fmt: None)
