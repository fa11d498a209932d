"""Optimizers against PyTorch: golden values produced by torch.optim (float64) and the
documented update equations written out step by step; closed-form single steps."""

import math

import numpy as np
import pytest

from numharden.autograd import Tensor
from numharden.errors import ConfigError, DTypeError, ShapeError
from numharden.train import SGD, Adam, make_optimizer

P0 = [0.5, -1.0, 2.0]
GRADS = [[0.1, -0.2, 0.3], [0.4, 0.1, -0.5], [-0.3, 0.2, 0.05]]
# torch 2.x, float64: p = Parameter(P0); for g in GRADS: p.grad = g; opt.step()
GOLDEN = {
    "sgd_nesterov": ((SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                     [0.41043976198, -0.988454623961, 2.006888036512]),
    "sgd_dampening": ((SGD, dict(lr=0.1, momentum=0.8, dampening=0.3)),
                      [0.4462, -0.9778, 1.9863]),
    "adam_l2": ((Adam, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
                [0.47757644479, -0.980464268226, 1.984230916011]),
    "adamw": ((Adam, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1,
                          decoupled=True)),
              [0.477939505092, -0.987085614973, 1.988672362286]),
}


def _run(cls, opts, dtype=np.float64, grads=GRADS):
    p = Tensor(np.array(P0, dtype), requires_grad=True)
    opt = cls({"p": p}, **opts)
    for g in grads:
        p.grad = np.array(g, dtype)
        opt.step()
    return p.data


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_matches_torch_golden(key):
    (cls, opts), want = GOLDEN[key]
    np.testing.assert_allclose(_run(cls, opts), want, rtol=0, atol=1e-11)
    np.testing.assert_allclose(_run(cls, opts, np.float32), want, rtol=0, atol=2e-6)


def _ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, wd=0.0):
    """torch.optim.SGD's documented algorithm, written out."""
    buf = None
    for t, g in enumerate(grads):
        g = g + wd * p
        if momentum:
            buf = g.copy() if t == 0 else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def _ref_adam(p, grads, lr, b1, b2, eps, wd=0.0, decoupled=False):
    """torch.optim.Adam / AdamW's documented algorithm, written out."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("opts", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                  dict(momentum=0.5, dampening=0.5, weight_decay=1e-2),
                                  dict(momentum=0.9, nesterov=True, weight_decay=5e-4)])
def test_sgd_equations_random(opts):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(6)]
    p = Tensor(p0.copy(), requires_grad=True)
    opt = SGD({"w": p}, lr=0.03, **opts)
    for g in grads:
        p.grad = g
        opt.step()
    want = _ref_sgd(p0, grads, 0.03, opts.get("momentum", 0.0), opts.get("dampening", 0.0),
                    opts.get("nesterov", False), opts.get("weight_decay", 0.0))
    np.testing.assert_allclose(p.data, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_equations_random_with_changing_lr(decoupled):
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(5)]
    p = Tensor(p0.copy(), requires_grad=True)
    opt = Adam({"w": p}, lr=0.1, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05,
               decoupled=decoupled)
    ref = p0.copy()
    m = np.zeros(7)
    v = np.zeros(7)
    for t, g in enumerate(grads, start=1):
        lr = 0.1 * 0.5 ** t  # a schedule changes lr between steps
        opt.set_lr_factor(0.5 ** t)
        p.grad = g
        opt.step()
        # one step of the written-out rule with the state carried here
        gg = g if decoupled else g + 0.05 * ref
        ref = ref * (1 - lr * 0.05) if decoupled else ref
        m = 0.8 * m + 0.2 * gg
        v = 0.95 * v + 0.05 * gg * gg
        ref = ref - lr * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.95 ** t)) + 1e-6)
    np.testing.assert_allclose(p.data, ref, rtol=1e-12, atol=1e-13)
    # and the stateless reference for a constant lr agrees with the class
    q = Tensor(p0.copy(), requires_grad=True)
    opt = Adam({"w": q}, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
               decoupled=decoupled)
    for g in grads:
        q.grad = g
        opt.step()
    np.testing.assert_allclose(q.data, _ref_adam(p0, grads, 0.01, 0.9, 0.999, 1e-8, 0.05,
                                                 decoupled), rtol=1e-12, atol=1e-13)


def test_closed_form_single_steps():
    # SGD: p - lr * (g + wd p) = 1 - 0.1 * (0.5 + 0.1) = 0.94
    np.testing.assert_allclose(_run(SGD, dict(lr=0.1, weight_decay=0.1), grads=[[0.5] * 3])[0],
                               0.5 - 0.1 * (0.5 + 0.1 * 0.5))
    # Adam's first step moves each coordinate by lr * g / (|g| + eps) ~ lr * sign(g)
    p = _run(Adam, dict(lr=0.01, eps=1e-8), grads=[[0.3, -2.0, 1e-3]])
    g = np.array([0.3, -2.0, 1e-3])
    np.testing.assert_allclose(p - np.array(P0), -0.01 * g / (np.abs(g) + 1e-8), rtol=1e-9)


def test_float32_parameters_are_updated_in_place():
    p = Tensor(np.ones(3, np.float32), requires_grad=True)
    before = p.data
    opt = SGD({"p": p}, lr=0.5, momentum=0.9)
    p.grad = np.ones(3, np.float64)  # a float64 gradient is applied in the parameter's dtype
    opt.step()
    assert p.data is before and p.data.dtype == np.float32
    np.testing.assert_array_equal(p.data, 0.5)


def test_parameters_without_gradient_are_skipped():
    a = Tensor(np.ones(2), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    opt = Adam({"a": a, "b": b}, lr=0.1)
    a.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert "b" not in opt.state and opt.state["a"]["step"] == 1
    opt.zero_grad()
    assert a.grad is None


def test_groups_override_defaults_and_schedule_scales_each_base_lr():
    a = Tensor(np.ones(2), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    opt = SGD([{"params": {"a": a}}, {"params": {"b": b}, "lr": 1.0, "weight_decay": 0.0}],
              lr=0.1, weight_decay=1.0)
    opt.set_lr_factor(0.5)
    a.grad = np.zeros(2)
    b.grad = np.zeros(2)
    opt.step()
    np.testing.assert_allclose(a.data, 1 - 0.05 * 1.0)  # only decay acts
    np.testing.assert_allclose(b.data, 1.0)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.5]


def test_make_optimizer_exempts_kinds_from_weight_decay():
    params = {n: Tensor(np.ones(2), requires_grad=True) for n in ("w", "b", "g", "c")}
    kinds = {"w": "weight", "b": "bias", "g": "bn", "c": "clip"}
    opt = make_optimizer({"name": "sgd", "lr": 0.1, "weight_decay": 0.5}, params, kinds)
    for p in params.values():
        p.grad = np.zeros(2)
    opt.step()
    assert params["w"].data[0] == pytest.approx(1 - 0.1 * 0.5)
    for n in "bgc":
        assert params[n].data[0] == 1.0
    assert opt.spec["no_decay"] == ["bias", "bn", "clip"] and opt.spec["momentum"] == 0.0
    # decay everything
    opt = make_optimizer({"name": "adamw", "lr": 0.1, "weight_decay": 0.5, "no_decay": []},
                         params, kinds)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["decoupled"] is True


@pytest.mark.parametrize("spec, match", [
    ({"name": "rmsprop"}, "unknown optimizer"),
    ({"name": "sgd", "lr": 0.1, "amsgrad": True}, "unknown option"),
    ({"name": "sgd", "lr": -1.0}, "'lr' must lie"),
    ({"name": "sgd", "lr": 0.1, "nesterov": True}, "Nesterov"),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}, "Nesterov"),
    ({"name": "adam", "betas": (0.9, 1.0)}, "betas must be < 1"),
    ({"name": "adam", "betas": 0.9}, "pair"),
    ({"name": "adam", "eps": float("nan")}, "'eps'"),
    ({"name": "sgd", "no_decay": ["biases"]}, "no_decay"),
    ({"name": "adamw", "decoupled": False}, "adamw"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_optimizer(spec, {"w": Tensor(np.ones(1), requires_grad=True)})


def test_bad_parameters():
    t = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(DTypeError, match="'w' must be a Tensor"):
        SGD({"w": np.ones(2)})
    with pytest.raises(ConfigError, match="two groups"):
        SGD([{"params": {"w": t}}, {"params": {"w": t}}])
    with pytest.raises(ConfigError, match="non-empty"):
        SGD([])
    opt = SGD({"w": t}, lr=0.1)
    t.grad = np.ones(3)
    with pytest.raises(ShapeError, match="gradient of 'w'"):
        opt.step()


def test_nan_lr_and_bool_rejected():
    with pytest.raises(ConfigError):
        SGD({"w": Tensor(np.ones(1), requires_grad=True)}, lr=math.nan)
    with pytest.raises(ConfigError):
        SGD({"w": Tensor(np.ones(1), requires_grad=True)}, lr=True)
