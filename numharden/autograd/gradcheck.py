"""Check autograd gradients against central finite differences (float64)."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


def gradcheck(f, inputs, *, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-5,
              directions: int = 3, elementwise_max: int = 64, seed: int = 0) -> float:
    """Compare the gradient of scalar ``f(*tensors)`` with central differences.

    Every input is checked along ``directions`` random unit directions v:
    ``<grad, v>`` against ``(f(x + eps v) - f(x - eps v)) / (2 eps)``; inputs with at
    most ``elementwise_max`` entries are also checked entry by entry. Cost: one backward
    plus ``2 * (directions + min(size, elementwise_max))`` forwards per input.

    Parameters
    ----------
    f : callable
        Takes Tensors (float64), returns a 0-d Tensor.
    inputs : list of ndarray
        Points at which to check; converted to float64.

    Returns
    -------
    float
        The largest absolute discrepancy seen.

    Raises
    ------
    AssertionError
        Naming the input index, the direction or entry, and both values.
    """
    xs = [np.array(x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(x.copy(), requires_grad=True) for x in xs]
    out = f(*tensors)
    if not isinstance(out, Tensor) or out.data.size != 1:
        raise ValueError("gradcheck needs f to return a scalar Tensor depending on its inputs")
    out.backward()
    rng = np.random.default_rng(seed)

    def value(i, x):
        out = f(*[Tensor(x if j == i else xs[j]) for j in range(len(xs))])
        return float(np.asarray(out.data if isinstance(out, Tensor) else out))

    worst = 0.0
    for i, x in enumerate(xs):
        g = tensors[i].grad if tensors[i].grad is not None else np.zeros_like(x)
        probes = [rng.standard_normal(x.shape) for _ in range(directions)]
        probes = [v / np.linalg.norm(v) for v in probes]
        labels = [f"random direction {k}" for k in range(directions)]
        if x.size <= elementwise_max:
            for k in range(x.size):
                e = np.zeros(x.size)
                e[k] = 1.0
                probes.append(e.reshape(x.shape))
                labels.append(f"entry {np.unravel_index(k, x.shape)}")
        for v, label in zip(probes, labels):
            numeric = (value(i, x + eps * v) - value(i, x - eps * v)) / (2 * eps)
            analytic = float(np.sum(g * v))
            err = abs(numeric - analytic)
            worst = max(worst, err)
            if err > atol + rtol * abs(numeric):
                raise AssertionError(f"gradient of input {i} along {label}: autograd "
                                     f"{analytic:.10g}, central difference {numeric:.10g}")
    return worst
