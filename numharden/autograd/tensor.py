"""A minimal reverse-mode autograd Tensor (micrograd style, NumPy arrays inside).

Each differentiable operation builds its output and a ``_backward`` closure that
accumulates gradients into its parents; :meth:`Tensor.backward` walks the graph in
reverse topological order. Operations live in :mod:`numharden.autograd.functional`
and call the same :mod:`numharden.ops` forwards that inference uses (house rule 1).
"""

from __future__ import annotations

import contextlib

import numpy as np

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Context in which operations record nothing for backward (inference, evaluation)."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def grad_enabled() -> bool:
    """Whether operations currently record their VJPs."""
    return _GRAD_ENABLED


class Tensor:
    """An array that remembers how it was computed.

    Parameters
    ----------
    data : ndarray
        The value; kept as given (float32 for training, float64 for numerical checks).
    requires_grad : bool
        Leaf tensors with ``requires_grad=True`` receive ``.grad`` after ``backward``.
    name : str, optional
        Parameter name, for error messages and optimisers.
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_parents", "_backward")
    __array_priority__ = 1000  # make ndarray <op> Tensor defer to Tensor

    def __init__(self, data, requires_grad: bool = False, name: str | None = None,
                 _parents: tuple = (), _backward=None):
        self.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self.name = name
        self._parents = _parents
        self._backward = _backward

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Tensor{label}(shape={self.data.shape}, dtype={self.data.dtype}, requires_grad={self.requires_grad})"

    def item(self) -> float:
        return float(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a scalar output. Intermediate gradients are freed as
        soon as they have been propagated.
        """
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() on a tensor of shape {self.data.shape} needs an explicit "
                    "grad; only scalar outputs default to grad=1")
            grad = np.ones_like(self.data)
        order: list[Tensor] = []
        seen: set[int] = set()
        stack = [(self, False)]
        while stack:  # iterative DFS: deep residual graphs would overflow recursion
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
        self.grad = grad if self.grad is None else self.grad + grad
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)
                if node._parents:  # interior node: its gradient is no longer needed
                    node.grad = None

    # arithmetic used to compose losses; heavy lifting goes through functional.py
    def __add__(self, other):
        from . import functional as F
        return F.add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        from . import functional as F
        if np.isscalar(other):  # keep the tensor's dtype (float32 - 1.0 stays float32)
            return F.add(self, self.data.dtype.type(-other))
        return F.add(self, F.scale(other, -1.0))

    def __rsub__(self, other):
        from . import functional as F
        if np.isscalar(other):
            return F.add(F.scale(self, -1.0), self.data.dtype.type(other))
        return F.add(F.scale(self, -1.0), other)

    def __neg__(self):
        from . import functional as F
        return F.scale(self, -1.0)

    def __mul__(self, other):
        from . import functional as F
        if np.isscalar(other):
            return F.scale(self, float(other))
        return F.mul(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not np.isscalar(other):
            raise TypeError("Tensor division is supported by a Python scalar only")
        return self * (1.0 / float(other))

    def sum(self):
        from . import functional as F
        return F.sum(self)

    def mean(self):
        from . import functional as F
        return F.scale(F.sum(self), 1.0 / self.data.size)


def data_of(x):
    """The array inside ``x`` (a Tensor or an array-like)."""
    return x.data if isinstance(x, Tensor) else x


def needs_grad(x) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def accumulate(x, g) -> None:
    """Add gradient ``g`` into ``x.grad`` if ``x`` is a Tensor that wants it."""
    if g is None or not needs_grad(x):
        return
    if g.shape != x.data.shape:
        g = unbroadcast(g, x.data.shape)
    x.grad = g if x.grad is None else x.grad + g


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the axes NumPy broadcasting added or stretched to reach ``g.shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g
