"""The autograd spine: Tensor mechanics, and the gradient of every functional op against
central finite differences in float64 (numharden.autograd.gradcheck)."""

import numpy as np
import pytest

from numharden.autograd import Tensor, functional as F, gradcheck, grad_enabled, no_grad

RNG = np.random.default_rng(1234)


def _r(*shape):
    return RNG.standard_normal(shape)


def _proj(shape, seed=0):
    """A fixed random projection: the loss <r, y> sees every output entry."""
    return np.random.default_rng(seed).standard_normal(shape)


def _check(fn, *inputs, **kw):
    """gradcheck of sum(r * fn(...)) for a fixed random r."""
    out_shape = np.shape(fn(*[np.asarray(x) for x in inputs]))
    r = _proj(out_shape)
    return gradcheck(lambda *t: F.sum(F.mul(fn(*t), r)), list(inputs), **kw)


# --- Tensor mechanics ---------------------------------------------------------------------

def test_diamond_accumulates_and_interior_grads_are_freed():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = F.mul(x, x)             # x^2
    z = F.add(y, F.scale(x, 3.0))
    loss = F.sum(F.mul(z, y))   # (x^2 + 3x) x^2, derivative 4x^3 + 9x^2
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data ** 3 + 9 * x.data ** 2)
    assert y.grad is None and z.grad is None  # freed after use
    loss2 = F.sum(x)
    loss2.backward()  # a second backward accumulates into leaves
    np.testing.assert_allclose(x.grad, 4 * x.data ** 3 + 9 * x.data ** 2 + 1)


def test_broadcast_gradients_are_summed():
    x = Tensor(_r(3, 4), requires_grad=True)
    b = Tensor(_r(4), requires_grad=True)
    c = Tensor(_r(3, 1), requires_grad=True)
    F.sum(F.mul(F.add(x, b), c)).backward()
    np.testing.assert_allclose(b.grad, (np.ones((3, 4)) * c.data).sum(0))
    np.testing.assert_allclose(c.grad, (x.data + b.data).sum(1, keepdims=True))
    np.testing.assert_allclose(x.grad, np.broadcast_to(c.data, (3, 4)))


def test_operators_and_mean():
    x = Tensor(np.array([1.0, 2.0, 4.0]), requires_grad=True)
    one = np.ones(3)
    loss = ((x * 2.0 - one) * x / 4.0 + (3.0 - x) * (-x)).mean()
    loss.backward()
    # d/dx mean((2x^2 - x)/4 - 3x + x^2) = ((4x - 1)/4 - 3 + 2x) / 3
    np.testing.assert_allclose(x.grad, ((4 * x.data - 1) / 4 - 3 + 2 * x.data) / 3)
    assert loss.item() == pytest.approx(np.mean((2 * x.data ** 2 - x.data) / 4
                                                - 3 * x.data + x.data ** 2))
    with pytest.raises(TypeError, match="scalar"):
        x / x


def test_tensor_minus_python_scalar():
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x - 1.0
    assert y.data.dtype == np.float32
    np.testing.assert_array_equal(y.data, [0.0, 1.0])
    F.sum(y * 3.0).backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    x.grad = None
    z = 5.0 - x
    np.testing.assert_array_equal(z.data, [4.0, 3.0])
    F.sum(z).backward()
    np.testing.assert_array_equal(x.grad, [-1.0, -1.0])


def test_no_grad_records_nothing_and_plain_arrays_stay_arrays():
    w = Tensor(_r(3, 2), requires_grad=True)
    with no_grad():
        assert not grad_enabled()
        y = F.linear(_r(4, 2), w)
    assert grad_enabled() and isinstance(y, np.ndarray)
    assert isinstance(F.relu(_r(3)), np.ndarray)  # no Tensor input, nothing recorded
    assert isinstance(F.linear(_r(4, 2), w), Tensor)
    assert not isinstance(F.linear(_r(4, 2), Tensor(w.data)), Tensor)  # requires_grad False


def test_backward_needs_explicit_grad_for_non_scalars():
    y = F.scale(Tensor(_r(3), requires_grad=True), 2.0)
    with pytest.raises(ValueError, match="explicit grad"):
        y.backward()
    x = Tensor(_r(3), requires_grad=True)
    F.scale(x, 2.0).backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, -2.0])


def test_deep_chain_does_not_hit_the_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = F.scale(y, 1.0)
    F.sum(y).backward()
    assert x.grad[0] == 1.0


def test_gradcheck_catches_a_wrong_gradient():
    def bad(x):  # forward x^2, backward claims 3x
        return Tensor(np.asarray(np.sum(x.data ** 2)), requires_grad=True, _parents=(x,),
                      _backward=lambda g: setattr(x, "grad", 3 * x.data * g))
    with pytest.raises(AssertionError, match="central difference"):
        gradcheck(bad, [_r(3)])


# --- every functional op against central differences --------------------------------------

def test_elementwise_algebra():
    a, b = _r(3, 4), _r(4)
    _check(F.add, a, b)
    _check(F.mul, a, b)
    _check(lambda t: F.scale(t, -2.5), a)
    gradcheck(lambda t: F.sum(t), [a])
    x = _r(5, 3)
    x[np.abs(x) < 0.05] = 0.3  # keep away from the kink of |x|
    gradcheck(lambda t: F.abs_sum(t), [x])
    _check(lambda t: F.reshape(t, (2, 6)), a)
    _check(lambda t: F.permute(t, (2, 0, 1)), _r(2, 3, 4))


@pytest.mark.parametrize("stride,padding,dilation,groups,bias", [
    ((1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    ((2, 1), (1, 2, 0, 1), (1, 1), 1, False),
    ((1, 2), (1, 1, 1, 1), (2, 1), 2, True),
    ((1, 1), (1, 1, 1, 1), (1, 1), 4, True),  # depthwise
])
def test_conv2d(stride, padding, dilation, groups, bias):
    x, w = _r(2, 6, 7, 4), _r(3, 2, 4 // groups, 4) * 0.5
    ins = [x, w] + ([_r(4)] if bias else [])
    _check(lambda *t: F.conv2d(t[0], t[1], t[2] if bias else None, stride, padding,
                               dilation, groups), *ins, elementwise_max=8)


def test_linear_and_channel_affine():
    _check(F.linear, _r(5, 3), _r(4, 3), _r(4))
    _check(lambda x, w: F.linear(x, w), _r(5, 3), _r(4, 3))
    _check(F.channel_affine, _r(2, 3, 3, 4), _r(4), _r(4))


def test_batchnorm_train_output_and_statistics():
    x, g, b = _r(4, 3, 2, 5) * 2 + 1, _r(5), _r(5)
    _check(lambda *t: F.batchnorm_train(*t, 1e-5)[0], x, g, b, elementwise_max=8)
    y, mean, var = F.batchnorm_train(x, g, b, 1e-5)
    flat = x.reshape(-1, 5)
    np.testing.assert_allclose(mean, flat.mean(0))
    np.testing.assert_allclose(var, flat.var(0))  # biased
    np.testing.assert_allclose(y.reshape(-1, 5),
                               (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5) * g + b)


def test_piecewise_linear_activations():
    x = _r(3, 4, 5) * 4
    for kink in (-1.0, 0.0, 0.5, 6.0):  # keep away from every kink
        x[np.abs(x - kink) < 0.05] += 0.2
    _check(F.relu, x)
    _check(F.relu6, x)
    _check(lambda t: F.hardtanh(t, -1.0, 0.5), x)


@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil", [
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    ((3, 2), (2, 1), (1, 1, 0, 1), (1, 2), True),
])
def test_maxpool2d(kernel, stride, padding, dilation, ceil):
    x = RNG.permutation(2 * 7 * 6 * 3).reshape(2, 7, 6, 3) * 0.01  # distinct: no ties
    _check(lambda t: F.maxpool2d(t, kernel, stride, padding, dilation, ceil), x,
           elementwise_max=8)


@pytest.mark.parametrize("ceil,include_pad", [(False, True), (True, False), (True, True)])
def test_avgpool_and_global_avgpool(ceil, include_pad):
    x = _r(2, 7, 6, 3)
    _check(lambda t: F.avgpool2d(t, (3, 2), (2, 2), (1, 1, 0, 1), ceil, include_pad), x,
           elementwise_max=8)
    _check(F.global_avgpool, x, elementwise_max=8)


def test_concat_flatten():
    _check(lambda a, b: F.concat([a, b]), _r(2, 3, 3, 2), _r(2, 3, 3, 4))
    _check(F.flatten, _r(2, 3, 4, 5), elementwise_max=8)
    # flatten follows NCHW order: the NHWC tensor (N,H,W,C) flattens as (N,C,H,W)
    x = _r(2, 3, 4, 5)
    np.testing.assert_array_equal(F.flatten(x), x.transpose(0, 3, 1, 2).reshape(2, -1))


def test_log_softmax_and_cross_entropy():
    z = _r(4, 6)
    _check(F.log_softmax, z)
    labels = np.array([0, 5, 2, 2])
    gradcheck(lambda t: F.cross_entropy(t, labels), [z])
    lse = np.log(np.exp(z).sum(1))
    assert float(F.cross_entropy(z, labels)) == pytest.approx(
        np.mean(lse - z[np.arange(4), labels]))


# --- straight-through estimators ----------------------------------------------------------

@pytest.mark.parametrize("spec,axis", [("int4/ch", 0), ("int8", None), ("fp16", None),
                                       ("uint4/ch", 0)])
def test_fake_quant_weight_is_straight_through(spec, axis):
    from numharden.formats import parse_format
    w = Tensor(_r(3, 2, 5, 5).astype(np.float32), requires_grad=True)
    fmt = parse_format(spec)
    q = F.fake_quant_weight(w, fmt, axis)
    np.testing.assert_array_equal(q.data, fmt.encode(w.data, axis=axis).decode())
    g = _proj(w.shape).astype(np.float32)
    F.sum(F.mul(q, g)).backward()
    np.testing.assert_array_equal(w.grad, g)  # identity Jacobian


def test_fake_quant_weight_fixed_point_zeroes_gradient_where_it_saturates():
    from numharden.formats import parse_format
    fmt = parse_format("q2.2")  # step 0.25, range [-2, 1.75]
    w = Tensor(np.array([-3.0, -2.0, -1.1, 0.4, 1.75, 1.9, 5.0]), requires_grad=True)
    q = F.fake_quant_weight(w, fmt)
    np.testing.assert_array_equal(q.data, [-2.0, -2.0, -1.0, 0.5, 1.75, 1.75, 1.75])
    F.sum(q).backward()
    np.testing.assert_array_equal(w.grad, [0, 1, 1, 1, 1, 0, 0])


def test_act_quant_pact_gradients_closed_form():
    clip = Tensor(np.array([1.5]), requires_grad=True)
    x = Tensor(np.array([-1.0, 0.0, 0.2, 0.9, 1.5, 1.6, 4.0]), requires_grad=True)
    y = F.act_quant(x, 2, clip)  # step 0.5
    np.testing.assert_array_equal(y.data, [0.0, 0.0, 0.0, 1.0, 1.5, 1.5, 1.5])
    g = np.arange(1.0, 8.0)
    F.sum(F.mul(y, g)).backward()
    np.testing.assert_array_equal(x.grad, [0, 2, 3, 4, 5, 0, 0])  # 1 on [0, clip]
    assert clip.grad.shape == (1,) and clip.grad[0] == 6 + 7  # sum over x > clip


def test_act_quant_clip_gradient_matches_differences_with_fine_steps():
    """At 16 bits the rounding is negligible: inside [0, clip] the output stays ~x whatever
    the clip, so d/dclip sum(r * q(x)) ~ sum(r[x > clip]), PACT's gradient."""
    x = _r(400) * 2
    r = _proj(400)
    c = 1.3
    y = lambda cc: float(np.sum(r * F.act_quant(x, 16, np.array([cc]))))  # noqa: E731
    numeric = (y(c + 1e-3) - y(c - 1e-3)) / 2e-3
    clip = Tensor(np.array([c]), requires_grad=True)
    F.sum(F.mul(F.act_quant(x, 16, clip), r)).backward()
    assert clip.grad[0] == pytest.approx(r[x > c].sum(), rel=1e-12)
    # rounding noise: <= 400 terms of |r| * step / (2 h) with step = c / 65535
    assert abs(numeric - clip.grad[0]) < 400 * 3 * (c / 65535) / 2e-3 / 10
