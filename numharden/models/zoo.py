"""Model zoo: LeNet-5, ResNet-20, ResNet-18 (CIFAR), MobileNetV2 (CIFAR), a small DenseNet.

Every builder takes the input shape and class count, so each architecture runs on
Fashion-MNIST (1x28x28) as well as CIFAR (3x32x32). Parameter names equal the
``state_dict`` keys of the matching PyTorch modules in ``tests/golden/make_golden.py``.
With ``abits`` set, an unsigned activation quantiser (learnable clip) follows every
ReLU/ReLU6, as in quantization-aware training of the FlatENN setting.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..graph import GraphBuilder, Model


class _Net:
    """GraphBuilder plus the activation-quantisation policy of one model."""

    def __init__(self, input_shape, seed, abits, act_clip):
        self.b = GraphBuilder(input_shape, seed)
        self.abits, self.act_clip = abits, act_clip

    def act(self, name, x, kind="relu"):
        x = getattr(self.b, kind)(name, x)
        if self.abits:
            clip = 6.0 if kind == "relu6" else self.act_clip
            x = self.b.act_quant(f"{name}_q", x, self.abits, clip)
        return x

    def conv_bn(self, prefix, x, out, k, stride=1, groups=1, conv="conv", bn="bn"):
        x = self.b.conv2d(f"{prefix}{conv}", x, out, k, stride=stride, padding=k // 2,
                          groups=groups, bias=False)
        return self.b.batchnorm(f"{prefix}{bn}", x)


def lenet5(net: _Net, num_classes: int) -> str:
    """LeCun et al. 1998 as used for Fashion-MNIST: two 5x5 conv + max-pool stages
    (6 and 16 channels, the first padded to keep 28x28) and three linear layers."""
    b = net.b
    x = b.conv2d("conv1", b.input, 6, 5, padding=2)
    x = b.maxpool2d("pool1", net.act("relu1", x), 2)
    x = b.conv2d("conv2", x, 16, 5)
    x = b.maxpool2d("pool2", net.act("relu2", x), 2)
    x = b.flatten("flatten", x)
    x = net.act("relu3", b.linear("fc1", x, 120))
    x = net.act("relu4", b.linear("fc2", x, 84))
    return b.linear("fc3", x, num_classes)


def _basic_block(net: _Net, prefix: str, x: str, out: int, stride: int,
                 shortcut: str = "B") -> str:
    b = net.b
    y = net.act(f"{prefix}relu1", net.conv_bn(prefix, x, out, 3, stride, conv="conv1", bn="bn1"))
    y = net.conv_bn(prefix, y, out, 3, 1, conv="conv2", bn="bn2")
    if stride != 1 or b.channels(x) != out:
        if shortcut == "A":  # parameter-free: subsample, zero channels split before/after
            extra = out - b.channels(x)
            x = b.subsample_pad(f"{prefix}shortcut", x, stride, (extra // 2, extra - extra // 2))
        else:
            x = b.conv2d(f"{prefix}downsample.0", x, out, 1, stride=stride, bias=False)
            x = b.batchnorm(f"{prefix}downsample.1", x)
    return net.act(f"{prefix}relu2", b.add(f"{prefix}add", y, x))


def _resnet(net: _Net, num_classes: int, widths, blocks, shortcut: str = "B") -> str:
    b = net.b
    x = net.act("relu", net.conv_bn("", b.input, widths[0], 3, conv="conv1", bn="bn1"))
    for stage, (width, n) in enumerate(zip(widths, blocks), start=1):
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            x = _basic_block(net, f"layer{stage}.{i}.", x, width, stride, shortcut)
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    return b.linear("fc", x, num_classes)


def resnet20(net: _Net, num_classes: int) -> str:
    """He et al. 2016 CIFAR ResNet-20 (16/32/64 channels, 3 blocks per stage; 1x1
    conv + batch-norm projection shortcuts where the shape changes)."""
    return _resnet(net, num_classes, (16, 32, 64), (3, 3, 3))


def resnet20a(net: _Net, num_classes: int) -> str:
    """ResNet-20 with He et al.'s option-A shortcuts: where the shape changes, the
    shortcut subsamples by 2 and pads the new channels with zeros (``subsample_pad``), so
    it holds no weights a fault could hit (option B's two 1x1 projections hold 2560
    weights and two batch norms)."""
    return _resnet(net, num_classes, (16, 32, 64), (3, 3, 3), shortcut="A")


def resnet18(net: _Net, num_classes: int) -> str:
    """ResNet-18 in its CIFAR form: 3x3 stem with stride 1 and no max-pool."""
    return _resnet(net, num_classes, (64, 128, 256, 512), (2, 2, 2, 2))


# MobileNetV2 for CIFAR: (expansion, out channels, repeats, first stride)
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenetv2(net: _Net, num_classes: int) -> str:
    """Sandler et al. 2018, CIFAR form (stride-1 stem, strides 1-1-2-2-1-2-1), inverted
    residuals with ReLU6 and linear bottlenecks; residual add where shapes allow."""
    b = net.b
    x = net.act("stem.relu", net.conv_bn("stem.", b.input, 32, 3), "relu6")
    i = 0
    for t, c, n, s in _MBV2:
        for r in range(n):
            p, cin, stride = f"blocks.{i}.", b.channels(x), (s if r == 0 else 1)
            y = x
            if t != 1:
                y = net.act(f"{p}expand.relu", net.conv_bn(f"{p}expand.", y, cin * t, 1), "relu6")
            y = net.conv_bn(f"{p}dw.", y, b.channels(y), 3, stride, groups=b.channels(y))
            y = net.act(f"{p}dw.relu", y, "relu6")
            y = net.conv_bn(f"{p}project.", y, c, 1)
            x = b.add(f"{p}add", y, x) if stride == 1 and cin == c else y
            i += 1
    x = net.act("head.relu", net.conv_bn("head.", x, 1280, 1), "relu6")
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    return b.linear("classifier", x, num_classes)


def densenet(net: _Net, num_classes: int, growth: int = 12, layers=(4, 4, 4),
             compression: float = 0.5) -> str:
    """A small DenseNet-BC (Huang et al. 2017): 3 dense blocks of bottleneck layers
    (BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k, concatenated), transitions with
    compression 0.5 and 2x2 average pooling."""
    b = net.b
    x = b.conv2d("conv0", b.input, 2 * growth, 3, padding=1, bias=False)
    for bi, n in enumerate(layers, start=1):
        for li in range(1, n + 1):
            p = f"block{bi}.layer{li}."
            y = net.act(f"{p}relu1", b.batchnorm(f"{p}bn1", x))
            y = b.conv2d(f"{p}conv1", y, 4 * growth, 1, bias=False)
            y = net.act(f"{p}relu2", b.batchnorm(f"{p}bn2", y))
            y = b.conv2d(f"{p}conv2", y, growth, 3, padding=1, bias=False)
            x = b.concat(f"{p}concat", [x, y])
        if bi < len(layers):
            p = f"trans{bi}."
            y = net.act(f"{p}relu", b.batchnorm(f"{p}bn", x))
            y = b.conv2d(f"{p}conv", y, int(b.channels(x) * compression), 1, bias=False)
            x = b.avgpool2d(f"{p}pool", y, 2)
    x = net.act("final.relu", b.batchnorm("final.bn", x))
    x = b.flatten("flatten", b.global_avgpool("avgpool", x))
    return b.linear("classifier", x, num_classes)


ARCHS = {"lenet5": lenet5, "resnet20": resnet20, "resnet20a": resnet20a, "resnet18": resnet18,
         "mobilenetv2": mobilenetv2, "densenet": densenet}


def build(arch: str, *, input_shape=(1, 28, 28), num_classes: int = 10,
          weight_format: str = "fp32", abits: int | None = None, act_clip: float = 6.0,
          seed: int = 0, meta: dict | None = None) -> Model:
    """Build a freshly initialised zoo model.

    Parameters
    ----------
    arch : str
        One of ``lenet5, resnet20, resnet20a, resnet18, mobilenetv2, densenet``.
    input_shape : tuple of int
        (C, H, W) of one input image.
    num_classes : int
    weight_format : str
        Storage format of conv/linear weights (e.g. ``'int4/ch'``, ``'fp32'``).
    abits : int, optional
        Quantise activations after every ReLU to this many unsigned bits.
    act_clip : float
        Initial clip value of ReLU activation quantisers (ReLU6 uses 6).
    seed : int
        Initialisation seed.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    net = _Net(input_shape, seed, abits, act_clip)
    out = ARCHS[arch](net, num_classes)
    info = {"arch": arch, "abits": abits, "weight_format": str(weight_format)}
    return net.b.build(out, weight_format=weight_format, meta=info | dict(meta or {}))
