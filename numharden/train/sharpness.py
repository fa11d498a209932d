"""Sharpness-aware steps: SAM, ASAM and SAQ (sharpness-aware quantisation).

All three minimise ``max_{||eps|| <= rho} L(. + eps)`` with the one-step approximation
of Foret et al. (2021): a first forward/backward at the current point gives a gradient
``g``, the worst-case perturbation ``eps`` is built from it, a second forward/backward at
the perturbed point gives the gradient the optimizer applies -- to the *unperturbed*
latents. **One step therefore costs two forward and two backward passes** (about twice
a plain step). The second pass runs with ``update_stats=False``, so batch-norm running
statistics are updated once per step, from the unperturbed pass. Both passes see the
whole objective (cross-entropy plus any activation-L1 penalty).

They differ in where the perturbation lives and how it is shaped:

``SAMStep``  (Foret et al. 2021) perturbs the float *latents* before quantisation:
             ``eps = rho g / ||g||_2``, ``g`` the latent gradient (through the STE), and
             evaluates ``L(Q(w + eps))``; the latents are restored bit-exactly after.
``ASAMStep`` (Kwon et al. 2021) as SAM with the adaptive scaling ``T_w = |w| + eta``
             (elementwise): ``eps = rho T_w^2 g / ||T_w g||_2``.
``SAQStep``  (Liu et al. 2021, "case 3", zhuang-group/SAQ) perturbs the *quantised*
             weights: ``g`` is the gradient with respect to ``Q(w)`` itself (obtained as
             the gradient of zero offsets added after quantisation), ``eps = rho g /
             ||g||_2`` and the second pass evaluates ``L(Q(w) + eps)``; its gradient
             reaches the latents through the STE. The latents are never modified.

``||.||_2`` is one norm over all perturbed tensors jointly. Perturbed are the conv /
linear weights, plus batch-norm weight and bias (``perturb_bn``, default True as in the
SAQ reference code) and conv / linear biases (``perturb_bias``, default False);
activation clips never. ``rho_warmup_epochs`` epochs run with ``rho = 0`` first, which
is exactly the plain step (one pass). With ``rho = 0`` a step *is* the plain step.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor
from ..errors import ConfigError
from .regularize import SparsityMeter
from .steps import PlainStep, StepResult


def _nonneg(owner: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{owner}: {key} must be a number, found {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{owner}: {key} must be a finite number >= 0, found {value!r}")
    return v


class _SharpnessStep(PlainStep):
    """Shared machinery: options, targets, warm-up, the joint norm, the two passes."""

    name = "sharpness"
    passes = 2
    default_rho = 0.05

    def __init__(self, rho: float | None = None, *, rho_warmup_epochs: int = 0,
                 perturb_bn: bool = True, perturb_bias: bool = False, act_l1=None):
        super().__init__(act_l1)
        self.rho = _nonneg(self.name, "rho", self.default_rho if rho is None else rho)
        w = rho_warmup_epochs
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0:
            raise ConfigError(f"{self.name}: rho_warmup_epochs must be an int >= 0, found {w!r}")
        self.rho_warmup_epochs = int(w)
        self.perturb_bn, self.perturb_bias = bool(perturb_bn), bool(perturb_bias)
        self._epoch = 0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self._epoch = int(epoch)

    @property
    def current_rho(self) -> float:
        """rho of the current epoch: 0 during the warm-up epochs."""
        return 0.0 if self._epoch < self.rho_warmup_epochs else self.rho

    def targets(self, trainable) -> list[str]:
        """Names of the latents the perturbation covers."""
        kinds = {"weight"} | ({"bn"} if self.perturb_bn else set()) | (
            {"bias"} if self.perturb_bias else set())
        return [n for n, k in trainable.kinds.items() if k in kinds]

    @staticmethod
    def joint_norm(tensors: dict) -> float:
        """sqrt of the sum of squares over all arrays of ``tensors`` (float64)."""
        return math.sqrt(sum(float(np.square(t, dtype=np.float64).sum())
                             for t in tensors.values()))

    def _grads(self, source: dict, dtype) -> dict:
        return {n: (np.zeros(t.shape, dtype) if t.grad is None else np.asarray(t.grad, dtype))
                for n, t in source.items()}

    def __call__(self, trainable, optimizer, x, labels) -> StepResult:
        if self.current_rho == 0.0:
            return super().__call__(trainable, optimizer, x, labels)
        meter = SparsityMeter(trainable.graph)
        loss, logits = self._two_passes(trainable, x, labels, meter)
        optimizer.step()
        return StepResult(loss, logits, meter.sparsity)

    def describe(self) -> dict:
        out = {"name": self.name, "rho": self.rho, "rho_warmup_epochs": self.rho_warmup_epochs,
               "perturb_bn": self.perturb_bn, "perturb_bias": self.perturb_bias,
               "passes": self.passes}
        if self.penalty is not None:
            out["act_l1"] = self.penalty.describe()
        return out


class SAMStep(_SharpnessStep):
    """Sharpness-aware minimisation on the latents: ``L(Q(w + rho g/||g||))``.

    Parameters
    ----------
    rho : float >= 0
        Radius of the perturbation (default 0.05).
    rho_warmup_epochs : int
        Epochs at the start with rho = 0 (plain steps).
    perturb_bn, perturb_bias : bool
        Also perturb batch-norm weight/bias (default True) and conv/linear biases
        (default False).
    act_l1 : optional
        Activation-L1 penalty, see :class:`PlainStep`.
    """

    name = "sam"

    def perturbation(self, trainable, grads: dict) -> dict:
        """``eps`` for the latent gradients ``grads`` of the target tensors."""
        norm = self.joint_norm(grads)
        s = self.current_rho / norm if norm > 0 else 0.0
        return {n: g * g.dtype.type(s) for n, g in grads.items()}

    def _two_passes(self, trainable, x, labels, meter):
        loss, logits = self.loss_and_grad(trainable, x, labels, observe=meter)
        names = self.targets(trainable)
        params = {n: trainable.params[n] for n in names}
        eps = self.perturbation(trainable, self._grads(params, trainable.dtype))
        saved = {n: p.data.copy() for n, p in params.items()}
        try:
            for n, p in params.items():
                p.data += eps[n]
            self.loss_and_grad(trainable, x, labels, update_stats=False)
        finally:  # bit-exact restore, in place (optimizers hold the arrays)
            for n, p in params.items():
                p.data[...] = saved[n]
        return loss, logits


class ASAMStep(SAMStep):
    """Adaptive SAM: ``eps = rho T^2 g / ||T g||`` with ``T = |w| + eta`` elementwise.

    Parameters
    ----------
    rho : float >= 0
        Radius in the rescaled space (default 0.5, Kwon et al.'s CIFAR setting).
    eta : float >= 0
        Offset keeping zero weights perturbable (default 0.01).
    rho_warmup_epochs, perturb_bn, perturb_bias, act_l1 :
        As :class:`SAMStep`.
    """

    name = "asam"
    default_rho = 0.5

    def __init__(self, rho: float | None = None, *, eta: float = 0.01, **options):
        super().__init__(rho, **options)
        self.eta = _nonneg(self.name, "eta", eta)

    def perturbation(self, trainable, grads: dict) -> dict:
        t = {n: np.abs(trainable.params[n].data) + trainable.dtype.type(self.eta)
             for n in grads}
        tg = {n: t[n] * g for n, g in grads.items()}
        norm = self.joint_norm(tg)
        s = self.current_rho / norm if norm > 0 else 0.0
        return {n: t[n] * tg[n] * tg[n].dtype.type(s) for n in grads}

    def describe(self) -> dict:
        return super().describe() | {"eta": self.eta}


class SAQStep(_SharpnessStep):
    """Sharpness-aware quantisation: ``L(Q(w) + rho g/||g||)``, ``g = dL/dQ(w)``.

    Parameters
    ----------
    rho : float >= 0
        Radius of the perturbation of the quantised weights (default 0.05).
    rho_warmup_epochs, perturb_bn, perturb_bias, act_l1 :
        As :class:`SAMStep`.
    """

    name = "saq"

    def perturbation(self, trainable, grads: dict) -> dict:
        """``eps`` for the gradients ``grads`` with respect to the quantised values."""
        norm = self.joint_norm(grads)
        s = self.current_rho / norm if norm > 0 else 0.0
        return {n: g * g.dtype.type(s) for n, g in grads.items()}

    def _two_passes(self, trainable, x, labels, meter):
        names = self.targets(trainable)
        zeros = {n: Tensor(np.zeros(trainable.params[n].shape, trainable.dtype),
                           requires_grad=True, name=f"{n} offset") for n in names}
        loss, logits = self.loss_and_grad(trainable, x, labels, offsets=zeros, observe=meter)
        eps = self.perturbation(trainable, self._grads(zeros, trainable.dtype))
        self.loss_and_grad(trainable, x, labels, update_stats=False, offsets=eps)
        return loss, logits


METHODS = {"plain": PlainStep, "sam": SAMStep, "asam": ASAMStep, "saq": SAQStep}
ALIASES = {"sgd": "plain"}  # "sgd" in the papers: ordinary descent, whatever the optimizer


def make_step(spec=None) -> PlainStep:
    """A step function from a spec.

    Parameters
    ----------
    spec : None, str, dict or step object
        None: :class:`PlainStep`. A name: ``'plain'`` (alias ``'sgd'``), ``'sam'``,
        ``'asam'``, ``'saq'`` with default options. A dict ``{'name': ..., option:
        value}`` with the options of the class (``rho``, ``eta``, ``rho_warmup_epochs``,
        ``perturb_bn``, ``perturb_bias``, ``act_l1``). Anything with ``__call__`` and
        ``describe`` is returned as it is.

    Returns
    -------
    PlainStep or subclass
    """
    if spec is None:
        return PlainStep()
    if not isinstance(spec, (str, dict)):
        if callable(spec) and hasattr(spec, "describe"):
            return spec
        raise ConfigError(f"step must be a method name, a dict or a step object, found "
                          f"{type(spec).__name__}")
    opts = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = str(opts.pop("name", "plain")).lower()
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ConfigError(f"unknown training method {name!r}; choose one of "
                          f"{', '.join(['sgd (= plain)', *[m for m in METHODS if m != 'plain']])}")
    try:
        return METHODS[name](**opts)
    except TypeError as e:
        raise ConfigError(f"method {name!r}: bad option(s) {sorted(opts)} ({e}); see "
                          f"numharden.train.sharpness.{METHODS[name].__name__}") from None


def worst_case_sharpness(model, images, labels, *, rho: float = 0.05, batch_size: int = 500,
                         perturb_bn: bool = True, perturb_bias: bool = False,
                         dtype=np.float64) -> dict:
    """Worst-case (SAM/SAQ) sharpness ``L(Q(w) + rho g/||g||) - L(Q(w))``.

    ``g = dL/dQ(w)`` is the gradient of the mean cross-entropy over the given fixed image
    subset with respect to the *stored, quantised* values (conv / linear weights, plus
    batch-norm weight and bias with ``perturb_bn``, conv / linear biases with
    ``perturb_bias``), in evaluation mode (batch norm uses its running statistics), and
    ``||.||`` is one norm over all those tensors jointly -- the one-step ascent direction
    SAQ trains against. This is the first-order worst case within the ``rho`` ball; the
    random-direction figure (:func:`numharden.analysis.landscape.sharpness`) averages
    over directions instead, and the two can rank models differently.

    Parameters
    ----------
    model : Model
    images : ndarray, shape (N, C, H, W) or (N, H, W), raw (uint8 or float)
    labels : ndarray, shape (N,), int
    rho : float > 0
        Radius of the perturbation (in the units of the decoded weights).
    batch_size : int
        Images per forward/backward pass (the gradient is accumulated over batches, so
        the result does not depend on it beyond rounding).
    dtype : numpy float dtype
        Precision of the passes (float64 by default).

    Returns
    -------
    dict
        ``rise``, ``center_loss``, ``perturbed_loss``, ``grad_norm``, ``rho``,
        ``perturbed`` (tensor names), ``images``.
    """
    from ..autograd import functional as F, no_grad
    from ..autograd.tensor import data_of
    from .trainable import Trainable

    rho = _nonneg("worst_case_sharpness", "rho", rho)
    if rho == 0.0:
        raise ConfigError("worst_case_sharpness: rho must be > 0, e.g. 0.05")
    if int(batch_size) < 1:
        raise ConfigError(f"worst_case_sharpness: batch_size must be >= 1, got {batch_size}")
    tr = Trainable(model, dtype=dtype)
    kinds = {"weight"} | ({"bn"} if perturb_bn else set()) | ({"bias"} if perturb_bias else set())
    names = [n for n, k in tr.kinds.items() if k in kinds]
    x, y = tr.normalize(images), np.asarray(labels)
    n = len(y)
    if n == 0 or len(x) != n:
        raise ConfigError(f"worst_case_sharpness needs images and labels of one non-zero "
                          f"length, got {len(x)} images and {n} labels")
    grads = {k: np.zeros(tr.params[k].shape, np.float64) for k in names}
    center = 0.0
    for s in range(0, n, int(batch_size)):
        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
        zeros = {k: Tensor(np.zeros(tr.params[k].shape, tr.dtype), requires_grad=True)
                 for k in names}
        tr.zero_grad()
        loss = F.cross_entropy(tr.forward(xb, train=False, offsets=zeros), yb)
        loss.backward()
        w = len(yb) / n
        center += w * float(data_of(loss))
        for k, z in zeros.items():
            if z.grad is not None:
                grads[k] += w * np.asarray(z.grad, np.float64)
    norm = _SharpnessStep.joint_norm(grads)
    scale = rho / norm if norm > 0 else 0.0
    eps = {k: (g * scale).astype(tr.dtype) for k, g in grads.items()}
    perturbed = 0.0
    with no_grad():
        for s in range(0, n, int(batch_size)):
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            logits = tr.forward(xb, train=False, offsets=eps)
            perturbed += len(yb) / n * float(data_of(F.cross_entropy(logits, yb)))
    return {"rise": perturbed - center, "center_loss": center, "perturbed_loss": perturbed,
            "grad_norm": norm, "rho": rho, "perturbed": names, "images": n}
