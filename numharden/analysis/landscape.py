"""Loss landscapes along filter-normalised random directions (Li et al. 2018).

A direction ``d`` holds one random Gaussian tensor per conv/linear weight; each output
filter ``d_i`` is rescaled to the norm of the matching weight filter ``w_i``
(``d_i <- d_i / ||d_i|| * ||w_i||``), which makes curves of networks with different
weight scales comparable. Biases and batch-norm tensors are left unperturbed by default.

For a quantized model two surfaces exist and both are supported:

``'requant'``  L(Q(w + a d)): perturb the real weights, store them again in the
               model's format (the scale is recomputed), evaluate — what a QAT
               optimiser "sees" through its latent weights.
``'float'``    L(Q(w) + a d): perturb the stored (dequantised) weights in float — the
               surface around the quantised point itself, as SAQ sharpness is defined.

Every evaluation uses the same fixed image subset, and directions come from a seeded
``numpy.random.Generator``, so surfaces and sharpness figures are reproducible.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import ops
from ..errors import ConfigError
from ..formats import parse_format

MODES = ("requant", "float")


def perturbable(model, include_bias_bn: bool = False) -> list[str]:
    """Parameter names a direction perturbs: conv/linear weights (plus biases and
    batch-norm weight/bias if ``include_bias_bn``)."""
    names = []
    for node in model.graph.nodes:
        if node.op in ("conv2d", "linear"):
            names.append(node.params["weight"])
            if include_bias_bn and "bias" in node.params:
                names.append(node.params["bias"])
        elif node.op == "batchnorm" and include_bias_bn:
            names += [node.params["weight"], node.params["bias"]]
    return names


def filter_normalized_direction(model, rng: np.random.Generator, names=None) -> dict:
    """A random direction, filter-normalised against the model's decoded weights.

    Parameters
    ----------
    model : Model
    rng : numpy.random.Generator
    names : list of str, optional
        Tensors to perturb (default :func:`perturbable`).

    Returns
    -------
    dict of str to ndarray (float64, each the shape of its parameter)
        For weights (ndim >= 2) every slice ``d[i]`` along axis 0 has the norm of
        ``w[i]``; 1-d tensors (bias, batch norm) are normalised as a whole.
    """
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("filter_normalized_direction needs a numpy.random.Generator")
    out = {}
    for name in names if names is not None else perturbable(model):
        w = model.params[name].decode().astype(np.float64)
        d = rng.standard_normal(w.shape)
        if w.ndim >= 2:
            axes = tuple(range(1, w.ndim))
            wn = np.sqrt((w * w).sum(axis=axes, keepdims=True))
            dn = np.sqrt((d * d).sum(axis=axes, keepdims=True))
        else:
            wn, dn = np.linalg.norm(w), np.linalg.norm(d)
        out[name] = d * (wn / np.where(dn == 0, 1.0, dn))
    return out


def _loss_acc(model, x, labels, batch_size=1000):
    loss_sum, correct = 0.0, 0
    for s in range(0, len(labels), batch_size):
        logits = model.forward(x[s:s + batch_size]).astype(np.float64)
        y = labels[s:s + batch_size]
        if not np.isfinite(logits).all():
            return float("inf"), float((logits.argmax(1) == y).mean())
        loss, _ = ops.cross_entropy(logits, y)
        loss_sum += float(loss) * len(y)
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(labels), correct / len(labels)


class _Evaluator:
    """Evaluates the model at w0 + sum_k a_k d_k on a fixed batch, reusing one copy."""

    def __init__(self, model, x, labels, mode, directions):
        if mode not in MODES:
            raise ConfigError(f"landscape mode must be one of {MODES}, got {mode!r}")
        self.work = model.copy()
        self.x, self.labels, self.mode = x, labels, mode
        self.base = {n: model.params[n].decode().astype(np.float64) for n in directions[0]}
        self.stored = {n: model.params[n] for n in directions[0]}
        self.dirs = directions
        self.fp32 = parse_format("fp32")

    def __call__(self, coeffs) -> tuple[float, float]:
        for name, w0 in self.base.items():
            w = w0 + sum(a * d[name] for a, d in zip(coeffs, self.dirs))
            st = self.stored[name]
            if self.mode == "requant":
                self.work.params[name] = st.fmt.encode(w.astype(np.float32), axis=st.axis)
            else:
                self.work.params[name] = self.fp32.encode(w.astype(np.float32))
        return _loss_acc(self.work, self.x, self.labels)


def landscape(model, images, labels, *, dims: int = 1, points: int = 21, span: float = 1.0,
              mode: str = "requant", seed: int = 0, include_bias_bn: bool = False,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Loss and accuracy on a 1-D line or 2-D plane through the model's weights.

    Parameters
    ----------
    model : Model
    images : ndarray, (N, C, H, W), raw
        The fixed evaluation subset.
    labels : ndarray, (N,), int
    dims : {1, 2}
    points : int
        Grid points per axis (odd includes 0).
    span : float
        Coefficients run over ``linspace(-span, span, points)``.
    mode : {'requant', 'float'}
        L(Q(w + a d)) or L(Q(w) + a d), see module docstring.
    seed : int
        Seed of the directions.

    Returns
    -------
    dict
        ``alphas`` (points,), ``betas`` (points,) for 2-D, ``loss`` and ``accuracy``
        arrays of shape (points,) or (points, points) [alpha index, beta index],
        ``center_loss``, ``center_accuracy``, and the settings.
    """
    if dims not in (1, 2):
        raise ConfigError(f"--dims must be 1 or 2, got {dims}")
    if points < 2 or not np.isfinite(span) or span <= 0:
        raise ConfigError(f"need points >= 2 and span > 0, got points={points}, span={span}")
    rng = np.random.default_rng(seed)
    names = perturbable(model, include_bias_bn)
    dirs = [filter_normalized_direction(model, rng, names) for _ in range(dims)]
    x = model.normalize(images)
    ev = _Evaluator(model, x, np.asarray(labels), mode, dirs)
    alphas = np.linspace(-span, span, points)
    shape = (points,) * dims
    loss, acc = np.empty(shape), np.empty(shape)
    total, done = loss.size, 0
    for idx in np.ndindex(*shape):
        loss[idx], acc[idx] = ev(tuple(alphas[i] for i in idx))
        done += 1
        if progress is not None:
            progress(done, total)
    c_loss, c_acc = _loss_acc(model, x, np.asarray(labels))
    out = {"dims": dims, "mode": mode, "seed": seed, "span": span, "points": points,
           "alphas": alphas, "loss": loss, "accuracy": acc, "center_loss": c_loss,
           "center_accuracy": c_acc, "perturbed": names, "images": int(len(labels))}
    if dims == 2:
        out["betas"] = alphas.copy()
    return out


def sharpness(model, images, labels, *, radius: float = 0.25, directions: int = 8,
              mode: str = "requant", seed: int = 0, include_bias_bn: bool = False) -> dict:
    """Mean loss rise at a fixed radius along filter-normalised random directions.

    ``rise = mean over k and sign s of L(w + s r d_k) - L(w)``, with ``directions``
    directions and both signs, on the given fixed subset. A flatter minimum has a smaller
    rise; the figure ranks models without looking at a plot.

    Returns
    -------
    dict
        ``rise`` (mean), ``rise_sem`` (standard error over the 2K evaluations),
        ``rises`` (list), ``center_loss``, ``radius``, ``directions``, ``mode``.
    """
    if radius <= 0 or directions < 1:
        raise ConfigError(f"need radius > 0 and directions >= 1, got {radius}, {directions}")
    rng = np.random.default_rng(seed)
    names = perturbable(model, include_bias_bn)
    x, labels = model.normalize(images), np.asarray(labels)
    center, _ = _loss_acc(model, x, labels)
    rises = []
    for _ in range(directions):
        ev = _Evaluator(model, x, labels, mode, [filter_normalized_direction(model, rng, names)])
        rises += [ev((radius,))[0] - center, ev((-radius,))[0] - center]
    r = np.asarray(rises)
    return {"rise": float(r.mean()), "rise_sem": float(r.std(ddof=1) / np.sqrt(len(r))),
            "rises": r.tolist(), "center_loss": center, "radius": radius,
            "directions": directions, "mode": mode, "seed": seed}


def plot_landscape(result: dict, path_stem) -> list:
    """1-D curve or 2-D contour of ``result`` as PNG and SVG; returns the paths."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'numharden[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    a = result["alphas"]
    label = "L(Q(w + a d))" if result["mode"] == "requant" else "L(Q(w) + a d)"
    if result["dims"] == 1:
        ax.plot(a, result["loss"], marker=".", label=label)
        ax.set_xlabel("a (filter-normalised direction)")
        ax.set_ylabel("cross-entropy loss")
        ax.legend()
    else:
        loss = np.minimum(result["loss"], np.nanpercentile(result["loss"], 95))
        cs = ax.contour(a, result["betas"], loss.T, levels=20)
        ax.clabel(cs, fontsize=7)
        ax.set_xlabel("a")
        ax.set_ylabel("b")
        ax.set_title(label)
    ax.grid(alpha=0.3)
    paths = []
    for ext in ("png", "svg"):
        p = f"{path_stem}.{ext}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths
