"""Sharpness-aware steps (SAM, ASAM, SAQ) against a NumPy computation of the two-pass
algorithm on a tiny int4 network, rho = 0 and warm-up equal to the plain step, bit-exact
restore of the latents, batch-norm statistics updated once, specs and errors."""

import numpy as np
import pytest

from numharden.data import Dataset
from numharden.errors import ConfigError
from numharden.graph import GraphBuilder
from numharden.train import (ASAMStep, PlainStep, SAMStep, SAQStep, Trainable, make_optimizer,
                             make_step, train)

LR = 0.1


def _net(seed=0):
    """flatten (1x4x4) -> fc1 (5, int4/ch) -> relu -> fc2 (3, int4/ch)."""
    b = GraphBuilder((1, 4, 4), seed=seed)
    x = b.relu("relu", b.linear("fc1", b.flatten("flat", b.input), 5))
    return b.build(b.linear("fc2", x, 3), weight_format="int4/ch", meta={"arch": "tiny"})


def _batch(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 4, 4)), rng.integers(0, 3, n)


def _sgd(tr):
    return make_optimizer({"name": "sgd", "lr": LR, "momentum": 0.0, "weight_decay": 0.0},
                          tr.params, tr.kinds)


# -- NumPy oracle ----------------------------------------------------------------------------

def q4(w):
    """int4/ch fake quantisation: per output row, scale max|w|/7, codes in [-7, 7]
    (float32 arithmetic, as numharden's formats store float32 scales)."""
    w = w.astype(np.float32)
    s = np.abs(w).max(axis=1, keepdims=True) / np.float32(7)
    s = np.where(s == 0, np.float32(1), s)
    return (np.clip(np.rint(w / s), -7, 7) * s).astype(np.float64)


def grads(W1, b1, W2, b2, x, y, lam=0.0):
    """Loss and gradients of CE (+ lam/N * sum relu) w.r.t. the values used (W1, b1, W2, b2)."""
    n = len(y)
    x = x.reshape(n, -1)
    z1 = x @ W1.T + b1
    a = np.maximum(z1, 0)
    z2 = a @ W2.T + b2
    z2s = z2 - z2.max(axis=1, keepdims=True)
    p = np.exp(z2s) / np.exp(z2s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean() + lam / n * a.sum()
    dz2 = p.copy()
    dz2[np.arange(n), y] -= 1
    dz2 /= n
    da = dz2 @ W2 + lam / n
    dz1 = da * (z1 > 0)
    return loss, {"fc1.weight": dz1.T @ x, "fc1.bias": dz1.sum(0), "fc2.weight": dz2.T @ a,
                  "fc2.bias": dz2.sum(0)}


def latents(tr):
    return {n: p.data.copy() for n, p in tr.params.items()}


def joint(gs, names):
    return np.sqrt(sum((gs[n] ** 2).sum() for n in names))


class Recording:
    """Mixin recording the perturbation the step builds."""

    def perturbation(self, trainable, g):
        self.eps = super().perturbation(trainable, g)
        return self.eps


class RecSAQ(Recording, SAQStep):
    pass


class RecSAM(Recording, SAMStep):
    pass


class RecASAM(Recording, ASAMStep):
    pass


# -- SAQ ----------------------------------------------------------------------------------

@pytest.mark.parametrize("perturb_bias, lam", [(False, 0.0), (True, 0.0), (False, 0.05)])
def test_saq_step_matches_the_hand_computation(perturb_bias, lam):
    tr = Trainable(_net(), dtype=np.float64)
    x, y = _batch()
    w = latents(tr)
    rho = 0.3
    step = RecSAQ(rho, perturb_bias=perturb_bias, act_l1=lam or None)
    res = step(tr, _sgd(tr), x, y)

    Q = {"fc1.weight": q4(w["fc1.weight"]), "fc2.weight": q4(w["fc2.weight"]),
         "fc1.bias": w["fc1.bias"], "fc2.bias": w["fc2.bias"]}
    loss0, g = grads(Q["fc1.weight"], Q["fc1.bias"], Q["fc2.weight"], Q["fc2.bias"], x, y, lam)
    names = ["fc1.weight", "fc2.weight"] + (["fc1.bias", "fc2.bias"] if perturb_bias else [])
    norm = joint(g, names)
    eps = {n: rho * g[n] / norm for n in names}
    assert sorted(step.eps) == sorted(names)
    for n in names:  # direction and size of the perturbation
        np.testing.assert_allclose(step.eps[n], eps[n], rtol=1e-9, atol=1e-12)
    assert joint(step.eps, names) == pytest.approx(rho, rel=1e-12)
    P = {n: Q[n] + eps.get(n, 0.0) for n in Q}
    _, G = grads(P["fc1.weight"], P["fc1.bias"], P["fc2.weight"], P["fc2.bias"], x, y, lam)
    assert res.loss == pytest.approx(loss0, rel=1e-10)
    for n in w:  # STE: the latent moves by -lr * gradient at the perturbed quantised point
        np.testing.assert_allclose(tr.params[n].data, w[n] - LR * G[n], rtol=1e-9, atol=1e-12)


def test_saq_gradient_is_taken_at_the_quantised_point_not_the_latent():
    """The perturbation direction comes from dL/dQ(w); a latent far from its quantised
    value gives a different SAM direction (L at Q(w) vs Q(w) is the same, but SAM
    re-quantises w + eps, which moves the scales)."""
    tr = Trainable(_net(seed=3), dtype=np.float64)
    x, y = _batch(seed=4)
    step = RecSAQ(0.5)
    step(tr, make_optimizer({"name": "sgd", "lr": 0.0}, tr.params, tr.kinds), x, y)
    w = latents(tr)
    _, g = grads(q4(w["fc1.weight"]), w["fc1.bias"], q4(w["fc2.weight"]), w["fc2.bias"], x, y)
    cos = sum((step.eps[n] * g[n]).sum() for n in step.eps) / (
        joint(step.eps, step.eps) * joint(g, step.eps))
    assert cos == pytest.approx(1.0, abs=1e-12)


# -- SAM / ASAM -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sam", "asam"])
def test_sam_and_asam_match_the_hand_computation(kind):
    tr = Trainable(_net(seed=2), dtype=np.float64)
    x, y = _batch(seed=5)
    w = latents(tr)
    rho, eta = (0.2, None) if kind == "sam" else (0.7, 0.05)
    step = RecSAM(rho) if kind == "sam" else RecASAM(rho, eta=eta)
    res = step(tr, _sgd(tr), x, y)

    loss0, g = grads(q4(w["fc1.weight"]), w["fc1.bias"], q4(w["fc2.weight"]), w["fc2.bias"], x, y)
    names = ["fc1.weight", "fc2.weight"]
    if kind == "sam":
        eps = {n: rho * g[n] / joint(g, names) for n in names}
    else:
        T = {n: np.abs(w[n]) + eta for n in names}
        tg = {n: T[n] * g[n] for n in names}
        eps = {n: rho * T[n] ** 2 * g[n] / joint(tg, names) for n in names}
    for n in names:
        np.testing.assert_allclose(step.eps[n], eps[n], rtol=1e-9, atol=1e-12)
    # the second pass re-quantises the perturbed latents (new per-channel scales)
    _, G = grads(q4(w["fc1.weight"] + eps["fc1.weight"]), w["fc1.bias"],
                 q4(w["fc2.weight"] + eps["fc2.weight"]), w["fc2.bias"], x, y)
    assert res.loss == pytest.approx(loss0, rel=1e-10)
    for n in w:  # update applied to the restored (unperturbed) latents
        np.testing.assert_allclose(tr.params[n].data, w[n] - LR * G[n], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cls", [SAMStep, ASAMStep])
def test_sam_restores_latents_bit_exactly(cls):
    tr = Trainable(_net(seed=6))  # float32: w + eps - eps would not round-trip
    x, y = _batch(seed=7)
    before = {n: p.data for n, p in tr.params.items()}
    copies = latents(tr)
    cls(0.9)(tr, make_optimizer({"name": "sgd", "lr": 0.0}, tr.params, tr.kinds),
             x.astype(np.float32), y)
    for n, p in tr.params.items():
        assert p.data is before[n]  # same arrays (optimizers hold them)
        np.testing.assert_array_equal(p.data, copies[n])


# -- rho = 0, warm-up, batch norm -----------------------------------------------------------

@pytest.mark.parametrize("cls", [SAMStep, ASAMStep, SAQStep])
def test_rho_zero_is_the_plain_step(cls):
    x, y = _batch(seed=8)
    runs = []
    for step in (PlainStep(), cls(0.0)):
        tr = Trainable(_net(seed=9))
        opt = make_optimizer({"name": "sgd", "lr": 0.05, "momentum": 0.9}, tr.params, tr.kinds)
        losses = [step(tr, opt, x.astype(np.float32), y).loss for _ in range(3)]
        runs.append((losses, latents(tr)))
    assert runs[0][0] == runs[1][0]
    for n in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][n], runs[1][1][n])


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, 1, 4, 4)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 0, k, :] = 250
    return Dataset(images, labels, ["a", "b", "c"], name="toy")


def test_warmup_epochs_run_plain_steps_then_sharpness_aware_ones():
    data = _toy()
    snaps = {}
    for key, step in (("plain", "plain"), ("saq", {"name": "saq", "rho": 0.5,
                                                    "rho_warmup_epochs": 1})):
        tr = Trainable(_net(seed=10))
        snaps[key] = []
        train(tr, data, epochs=2, batch_size=16, seed=1, calibration=False,
              callback=lambda e, tr=tr, k=key: snaps[k].append(latents(tr))
              if e.kind == "epoch" else None, step=step)
    for n in snaps["plain"][0]:  # epoch 1: identical; epoch 2: SAQ differs
        np.testing.assert_array_equal(snaps["plain"][0][n], snaps["saq"][0][n])
    assert any(not np.array_equal(snaps["plain"][1][n], snaps["saq"][1][n])
               for n in snaps["plain"][1])


def _bn_net(seed=0):
    b = GraphBuilder((1, 4, 4), seed=seed)
    x = b.relu("relu", b.batchnorm("bn", b.conv2d("conv", b.input, 3, 3, padding=1)))
    return b.build(b.linear("fc", b.flatten("flat", x), 3), weight_format="int4/ch")


@pytest.mark.parametrize("cls", [SAMStep, SAQStep])
def test_batch_norm_statistics_are_updated_once_and_bn_is_perturbed(cls):
    x, y = _batch(seed=11)
    x = x.astype(np.float32)
    stats = []
    for step in (PlainStep(), cls(0.5), cls(0.5, perturb_bn=False)):
        tr = Trainable(_bn_net())
        step(tr, make_optimizer({"name": "sgd", "lr": 0.1}, tr.params, tr.kinds), x, y)
        stats.append(({k: v.copy() for k, v in tr.buffers.items()}, latents(tr)))
        if isinstance(step, cls):
            assert ("bn.weight" in step.targets(tr)) == step.perturb_bn
            assert "conv.bias" not in step.targets(tr)
    for k in stats[0][0]:
        np.testing.assert_array_equal(stats[0][0][k], stats[1][0][k])
    # perturbing BN changes the second-pass gradient of the BN parameters
    assert not np.array_equal(stats[1][1]["bn.weight"], stats[2][1]["bn.weight"])


def test_saq_never_touches_the_latents_between_passes():
    tr = Trainable(_net(seed=12), dtype=np.float64)
    x, y = _batch(seed=13)
    seen = []
    forward = tr.forward

    def spy(*args, **kw):
        seen.append((latents(tr), kw.get("offsets"), kw.get("update_stats")))
        return forward(*args, **kw)
    tr.forward = spy
    SAQStep(0.4)(tr, make_optimizer({"name": "sgd", "lr": 0.0}, tr.params, tr.kinds), x, y)
    assert len(seen) == 2 and [s[2] for s in seen] == [True, False]
    for n in seen[0][0]:
        np.testing.assert_array_equal(seen[0][0][n], seen[1][0][n])
    assert all(np.all(v.data == 0) for v in seen[0][1].values())  # zero offsets, first pass


# -- specs and errors -----------------------------------------------------------------------

def test_make_step_specs_and_recipe():
    assert type(make_step(None)) is PlainStep and type(make_step("sgd")) is PlainStep
    s = make_step({"name": "asam", "rho": 1.0, "eta": 0.1, "rho_warmup_epochs": 2,
                   "perturb_bias": True, "act_l1": "1e-4"})
    assert isinstance(s, ASAMStep)
    d = s.describe()
    assert d["name"] == "asam" and d["rho"] == 1.0 and d["eta"] == 0.1 and d["passes"] == 2
    assert d["rho_warmup_epochs"] == 2 and d["perturb_bias"] and d["perturb_bn"]
    assert d["act_l1"]["lambda"] == 1e-4
    assert make_step("saq").rho == 0.05 and make_step("asam").rho == 0.5
    assert PlainStep().describe() == {"name": "plain"}
    model, _ = train(_net(), _toy(32), epochs=1, batch_size=16, calibration=False,
                     step={"name": "saq", "rho": 0.1})
    assert model.meta["training"]["recipe"]["step"]["name"] == "saq"


@pytest.mark.parametrize("spec, match", [
    ({"name": "saq", "rho": -0.1}, "rho must be a finite number >= 0"),
    ({"name": "saq", "rho": float("nan")}, "rho must be a finite number >= 0"),
    ({"name": "asam", "eta": -1}, "eta must be"),
    ({"name": "sam", "rho_warmup_epochs": 1.5}, "rho_warmup_epochs"),
    ({"name": "saq", "bogus": 1}, "bad option"),
    ("adamw", "unknown training method 'adamw'"),
    ({"name": "saq", "act_l1": -1e-5}, "act_l1 lambda must be a finite number >= 0"),
    (42, "step must be a method name"),
])
def test_bad_specs_raise_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_step(spec)


# -- worst-case sharpness -----------------------------------------------------------------------

def _ce(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def _inference_loss(model, x, y):
    """Loss through the inference executor (batch norm folded), float64."""
    for t in model.params.values():
        t.touch()   # codes were edited in place
    return _ce(model.forward(model.normalize(x), dtype=np.float64), y)


def test_worst_case_sharpness_equals_finite_difference_ascent():
    """fp32 storage: Q is the identity, so g can be taken by central differences of the
    inference loss on the stored codes, and L(w + rho g/||g||) evaluated by storing it."""
    from numharden.train import worst_case_sharpness
    b = GraphBuilder((1, 4, 4), seed=2)
    x = b.relu("relu", b.batchnorm("bn", b.conv2d("conv", b.input, 3, 3, padding=1)))
    m = b.build(b.linear("fc", b.flatten("flat", x), 3), weight_format="fp32")
    xs, ys = _batch(n=40, seed=3)
    names = ["conv.weight", "fc.weight"]        # perturb_bn=False, perturb_bias=False
    base = {n: m.params[n].codes.copy() for n in names}
    g = {}
    h = 1e-3
    for n in names:
        gn = np.zeros(base[n].shape)
        for i in np.ndindex(base[n].shape):
            vals = []
            for s in (h, -h):
                m.params[n].codes[i] = base[n][i] + s
                vals.append(_inference_loss(m, xs, ys))
            m.params[n].codes[i] = base[n][i]
            gn[i] = (vals[0] - vals[1]) / (2 * h)
        g[n] = gn
    norm = np.sqrt(sum((v ** 2).sum() for v in g.values()))
    rho = 0.05
    for n in names:
        m.params[n].codes[...] = (base[n] + rho * g[n] / norm).astype(np.float32)
    expect = _inference_loss(m, xs, ys)
    for n in names:
        m.params[n].codes[...] = base[n]
    center = _inference_loss(m, xs, ys)
    r = worst_case_sharpness(m, xs, ys, rho=rho, perturb_bn=False, batch_size=16)
    assert r["perturbed"] == names
    assert r["center_loss"] == pytest.approx(center, rel=1e-6)
    assert r["grad_norm"] == pytest.approx(norm, rel=1e-3)
    assert r["perturbed_loss"] == pytest.approx(expect, rel=1e-4)
    assert r["rise"] > 0
    # first order: a small ball rises by rho ||g||
    small = worst_case_sharpness(m, xs, ys, rho=1e-4, perturb_bn=False)
    assert small["rise"] == pytest.approx(1e-4 * norm, rel=0.02)
    # the codes are untouched and the batch size only changes rounding
    assert all(np.array_equal(m.params[n].codes, base[n]) for n in names)
    whole = worst_case_sharpness(m, xs, ys, rho=rho, perturb_bn=False, batch_size=40)
    assert whole["rise"] == pytest.approx(r["rise"], rel=1e-9)


def test_worst_case_sharpness_quantised_model_and_errors():
    from numharden.train import worst_case_sharpness
    m = _bn_net(seed=4)
    xs, ys = _batch(n=24, seed=5)
    r = worst_case_sharpness(m, xs, ys, rho=0.1)
    assert r["center_loss"] == pytest.approx(_inference_loss(m, xs, ys), rel=1e-6)
    assert set(r["perturbed"]) == {"conv.weight", "fc.weight", "bn.weight", "bn.bias"}
    assert r["rise"] > 0
    with pytest.raises(ConfigError, match="rho"):
        worst_case_sharpness(m, xs, ys, rho=0.0)
    with pytest.raises(ConfigError, match="rho"):
        worst_case_sharpness(m, xs, ys, rho=float("nan"))
