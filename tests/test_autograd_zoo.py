"""Gradients of whole zoo graphs (through the executor, as training runs them) against
central finite differences in float64, in training mode (batch-norm batch statistics)
and evaluation mode (running statistics), with respect to parameters and the input."""

import numpy as np
import pytest

from numharden.autograd import Tensor, functional as F, gradcheck
from numharden.models import build
from numharden.train import Trainable

# arch -> (input shape, parameters to check: a representative, cheap subset)
CASES = {
    "lenet5": ((1, 12, 12), ["conv1.weight", "conv2.bias", "fc1.weight", "fc3.bias"]),
    "resnet20": ((3, 8, 8), ["conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight",
                             "layer2.0.downsample.1.bias", "layer3.2.bn2.weight", "fc.weight"]),
    "resnet20a": ((3, 8, 8), ["conv1.weight", "layer2.0.conv1.weight", "layer2.0.bn2.bias",
                              "layer3.0.conv2.weight", "fc.weight"]),
    "resnet18": ((3, 8, 8), ["conv1.weight", "layer1.0.bn1.bias", "layer4.1.conv2.weight",
                             "fc.bias"]),
    "mobilenetv2": ((3, 8, 8), ["stem.conv.weight", "blocks.1.dw.conv.weight",
                                "blocks.3.project.bn.weight", "classifier.weight"]),
    "densenet": ((3, 8, 8), ["conv0.weight", "block1.layer2.bn1.weight",
                             "trans1.conv.weight", "final.bn.bias", "classifier.bias"]),
}


def _setup(arch, seed=0):
    shape, names = CASES[arch]
    model = build(arch, input_shape=shape, num_classes=5, seed=seed)  # fp32, no act quant
    t = Trainable(model, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for name, buf in t.buffers.items():  # non-trivial running statistics for eval mode
        buf[...] = rng.uniform(0.5, 2.0, buf.shape) if name.endswith("var") else \
            rng.normal(0, 0.3, buf.shape)
    for name, p in t.params.items():  # BN affine away from its (1, 0) init
        if t.kinds[name] == "bn":
            p.data[...] += rng.normal(0, 0.2, p.shape)
    x = rng.standard_normal((4,) + shape)
    labels = rng.integers(0, 5, 4)
    return t, names, x, labels


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("arch", sorted(CASES))
def test_zoo_parameter_and_input_gradients(arch, train):
    t, names, x, labels = _setup(arch)
    for name in names:
        assert name in t.params, f"{arch} has no parameter {name}"
    fixed = {n: Tensor(p.data) for n, p in t.params.items()}

    def loss(xt, *ws):
        params = fixed | dict(zip(names, ws))
        logits = t.forward(xt, train=train, update_stats=False, params=params)
        return F.cross_entropy(logits, labels)

    # eps 1e-8: deep graphs (batch norm over few values amplifies perturbations) hold
    # activations within ~1e-6 of a ReLU kink, where a wider difference averages two
    # slopes; float64 rounding still costs only ~1e-7 in the difference quotient
    gradcheck(loss, [x] + [t.params[n].data for n in names], eps=1e-8, directions=2,
              elementwise_max=3, atol=1e-5, rtol=1e-5)

