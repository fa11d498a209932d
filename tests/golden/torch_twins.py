"""Independent ``torch.nn`` twins of the numharden model zoo (imports torch only).

Each class mirrors one builder of ``numharden/models/zoo.py`` with the same parameter
names, so ``load_state_dict(strict=True)`` accepts ``Model.float_params()`` (plus the
``num_batches_tracked`` buffers torch adds). NCHW throughout; batch norm is an ordinary
``nn.BatchNorm2d`` (eval mode: running statistics, not folded). With ``abits`` set an
:class:`ActQuant` follows every ReLU/ReLU6, written directly in torch as
``torch.round(torch.clamp(x, 0, clip) / s) * s`` with ``s = clip / (2**bits - 1)``.

This module never imports numharden: ``make_golden.py`` and ``bench/bench_inference.py``
(whose torch worker process must not load numba's OpenMP runtime next to torch's) both
use it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ActQuant(nn.Module):
    """Unsigned ``bits``-bit quantiser on [0, clip] with a learnable clip (PACT style)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits
        self.clip = nn.Parameter(torch.full((1,), 6.0))

    def forward(self, x):
        c = float(self.clip)  # exact: a Python float is a float64
        s = c / (2 ** self.bits - 1)
        return torch.round(torch.clamp(x, 0.0, c) / s) * s


def _aq(abits):
    return ActQuant(abits) if abits else None


def _act(x, quant, relu6=False):
    x = F.relu6(x) if relu6 else F.relu(x)
    return x if quant is None else quant(x)


# -- LeNet-5 -----------------------------------------------------------------------------
class LeNet5(nn.Module):
    def __init__(self, shape, num_classes, abits):
        super().__init__()
        c, h, w = shape
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.relu1_q = _aq(abits)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2_q = _aq(abits)
        h, w = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * h * w, 120)
        self.relu3_q = _aq(abits)
        self.fc2 = nn.Linear(120, 84)
        self.relu4_q = _aq(abits)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(_act(self.conv1(x), self.relu1_q), 2)
        x = F.max_pool2d(_act(self.conv2(x), self.relu2_q), 2)
        x = torch.flatten(x, 1)
        x = _act(self.fc1(x), self.relu3_q)
        x = _act(self.fc2(x), self.relu4_q)
        return self.fc3(x)


# -- ResNets (CIFAR form) ----------------------------------------------------------------
class OptionA(nn.Module):
    """He et al.'s parameter-free shortcut, as in the common CIFAR ResNet code."""

    def __init__(self, cin, out, stride):
        super().__init__()
        self.stride, self.before = stride, (out - cin) // 2
        self.after = out - cin - self.before

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride],
                     (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    def __init__(self, cin, out, stride, abits, shortcut="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu1_q = _aq(abits)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = None
        if (stride != 1 or cin != out) and shortcut == "A":
            self.shortcut = OptionA(cin, out, stride)
        elif stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))
        self.relu2_q = _aq(abits)

    def forward(self, x):
        y = _act(self.bn1(self.conv1(x)), self.relu1_q)
        y = self.bn2(self.conv2(y))
        sc = x if self.downsample is None else self.downsample(x)
        if hasattr(self, "shortcut"):
            sc = self.shortcut(x)
        return _act(y + sc, self.relu2_q)


class ResNet(nn.Module):
    def __init__(self, shape, num_classes, abits, widths, blocks, shortcut="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(shape[0], widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu_q = _aq(abits)
        cin = widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks), start=1):
            layer = []
            for i in range(n):
                layer.append(BasicBlock(cin, width, 2 if stage > 1 and i == 0 else 1, abits,
                                        shortcut))
                cin = width
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.nstages = len(widths)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = _act(self.bn1(self.conv1(x)), self.relu_q)
        for stage in range(1, self.nstages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -- MobileNetV2 (CIFAR form) ------------------------------------------------------------
class ConvBN(nn.Module):
    """conv + BN (+ ReLU6 and its quantiser); attribute names match the zoo's prefixes."""

    def __init__(self, cin, out, k, stride=1, groups=1, act=True, abits=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, out, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.act = act
        self.relu_q = _aq(abits) if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return _act(x, self.relu_q, relu6=True) if self.act else x


class InvertedResidual(nn.Module):
    def __init__(self, cin, t, c, stride, abits):
        super().__init__()
        hidden = cin * t
        self.expand = ConvBN(cin, hidden, 1, abits=abits) if t != 1 else None
        self.dw = ConvBN(hidden, hidden, 3, stride, groups=hidden, abits=abits)
        self.project = ConvBN(hidden, c, 1, act=False)
        self.residual = stride == 1 and cin == c

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.dw(y))
        return y + x if self.residual else y


MBV2 = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
        (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self, shape, num_classes, abits):
        super().__init__()
        self.stem = ConvBN(shape[0], 32, 3, abits=abits)
        blocks, cin = [], 32
        for t, c, n, s in MBV2:
            for r in range(n):
                blocks.append(InvertedResidual(cin, t, c, s if r == 0 else 1, abits))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cin, 1280, 1, abits=abits)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -- DenseNet-BC (small) -----------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin, growth, abits):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1_q = _aq(abits)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.relu2_q = _aq(abits)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(_act(self.bn1(x), self.relu1_q))
        y = self.conv2(_act(self.bn2(y), self.relu2_q))
        return torch.cat([x, y], 1)


class Transition(nn.Module):
    def __init__(self, cin, out, abits):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu_q = _aq(abits)
        self.conv = nn.Conv2d(cin, out, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(_act(self.bn(x), self.relu_q)), 2)


class BNReLU(nn.Module):
    def __init__(self, c, abits):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.relu_q = _aq(abits)

    def forward(self, x):
        return _act(self.bn(x), self.relu_q)


class DenseNet(nn.Module):
    def __init__(self, shape, num_classes, abits, growth=12, layers=(4, 4, 4), compression=0.5):
        super().__init__()
        self.conv0 = nn.Conv2d(shape[0], 2 * growth, 3, padding=1, bias=False)
        c, self.nblocks = 2 * growth, len(layers)
        for bi, n in enumerate(layers, start=1):
            block = nn.Module()
            for li in range(1, n + 1):
                block.add_module(f"layer{li}", DenseLayer(c, growth, abits))
                c += growth
            setattr(self, f"block{bi}", block)
            if bi < len(layers):
                setattr(self, f"trans{bi}", Transition(c, int(c * compression), abits))
                c = int(c * compression)
        self.final = BNReLU(c, abits)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.conv0(x)
        for bi in range(1, self.nblocks + 1):
            for layer in getattr(self, f"block{bi}").children():
                x = layer(x)
            if bi < self.nblocks:
                x = getattr(self, f"trans{bi}")(x)
        x = self.final(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def torch_net(arch: str, shape, num_classes: int, abits) -> nn.Module:
    """The torch twin of ``numharden.models.build(arch, ...)`` (randomly initialised)."""
    if arch == "lenet5":
        return LeNet5(shape, num_classes, abits)
    if arch == "resnet20":
        return ResNet(shape, num_classes, abits, (16, 32, 64), (3, 3, 3))
    if arch == "resnet20a":
        return ResNet(shape, num_classes, abits, (16, 32, 64), (3, 3, 3), shortcut="A")
    if arch == "resnet18":
        return ResNet(shape, num_classes, abits, (64, 128, 256, 512), (2, 2, 2, 2))
    if arch == "mobilenetv2":
        return MobileNetV2(shape, num_classes, abits)
    if arch == "densenet":
        return DenseNet(shape, num_classes, abits)
    raise ValueError(f"no torch twin for architecture {arch!r}")


def load_params(net: nn.Module, params: dict) -> nn.Module:
    """Copy float arrays keyed by parameter name into ``net`` (strict) and set eval mode."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    for key, buf in net.state_dict().items():
        if key.endswith("num_batches_tracked"):  # torch-only bookkeeping buffer
            state[key] = buf.clone()
    net.load_state_dict(state, strict=True)
    return net.eval()
