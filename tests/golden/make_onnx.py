"""Generate the PyTorch -> ONNX fixtures checked by ``tests/test_onnx_torch.py`` (dev tool).

Usage (repository root; needs ``torch`` and ``onnx``, which the tests never import)::

    python tests/golden/make_onnx.py              # every architecture
    python tests/golden/make_onnx.py resnet20a    # some

For LeNet-5, ResNet-20 (option-B and option-A shortcuts), MobileNetV2 and DenseNet-BC (reduced widths and 16x16 inputs
for the CIFAR nets, so every file stays small) this writes ``onnx/<arch>_<mode>.onnx``
exported by ``torch.onnx.export`` (TorchScript exporter, opset 13, eval mode, dynamic
batch) and ``onnx/<arch>_<mode>.npz`` with the input ``x`` and PyTorch's float32
``logits`` on it. Batch-norm statistics are randomised so folding is exercised.

``'qdq'`` models are written the way PyTorch's quantization-aware training exports
them: ``torch.fake_quantize_per_channel_affine`` / ``_per_tensor_affine`` on weights
(exported as QuantizeLinear/DequantizeLinear on the initializer) and 8-bit unsigned
fake quantisation with zero point 0 after every ReLU/ReLU6, scales calibrated on the
input batch. Weight schemes differ per model to cover the QDQ variants: LeNet-5 uint8
per tensor with zero points, ResNet-20 int8 per channel, MobileNetV2 int8 per channel
(uint8 per tensor for the classifier), DenseNet int8 per tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent / "onnx"
SEED = 20261205
BATCH = 4


class Quant:
    """Fake-quantisation policy of one model: None (float) or weight scheme + calibration."""

    def __init__(self, scheme: str | None):
        self.scheme, self.scales, self.calibrating = scheme, {}, False

    def w(self, w: torch.Tensor, scheme: str | None = None) -> torch.Tensor:
        if self.scheme is None:
            return w
        scheme = scheme or self.scheme
        if scheme == "int8/ch":
            s = (w.detach().abs().flatten(1).amax(1) / 127).clamp_min(1e-8)
            return torch.fake_quantize_per_channel_affine(
                w, s, torch.zeros(len(s), dtype=torch.int32), 0, -128, 127)
        lo, hi = float(w.min().clamp(max=0)), float(w.max().clamp(min=0))
        if scheme == "uint8":
            s = max((hi - lo) / 255, 1e-8)
            return torch.fake_quantize_per_tensor_affine(w, s, int(round(-lo / s)), 0, 255)
        s = max(max(-lo, hi) / 127, 1e-8)  # int8 per tensor
        return torch.fake_quantize_per_tensor_affine(w, s, 0, -128, 127)

    def a(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.scheme is None:
            return x
        if self.calibrating:
            self.scales[key] = max(float(x.max()) / 255, 1e-6)
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scales[key], 0, 0, 255)


class QConv(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.q.w(self.weight), self.bias)


class QLinear(nn.Linear):
    scheme = None

    def forward(self, x):
        return F.linear(x, self.q.w(self.weight, self.scheme), self.bias)


class Net(nn.Module):
    def __init__(self, q: Quant):
        super().__init__()
        self.q = q
        self.n = 0

    def conv(self, *a, **k):
        c = QConv(*a, **k)
        c.q = self.q
        return c

    def linear(self, *a, scheme=None):
        f = QLinear(*a)
        f.q, f.scheme = self.q, scheme
        return f

    def act(self, key, x, six=False):
        return self.q.a(key, F.relu6(x) if six else F.relu(x))


class LeNet5(Net):
    def __init__(self, q):
        super().__init__(q)
        self.conv1, self.conv2 = self.conv(1, 6, 5, padding=2), self.conv(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = (self.linear(400, 120), self.linear(120, 84),
                                        self.linear(84, 10))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = F.max_pool2d(self.act("r1", self.conv1(x)), 2)
        x = F.max_pool2d(self.act("r2", self.conv2(x)), 2)
        x = x.view(-1, 400)  # exported as Reshape
        x = self.drop(self.act("r3", self.fc1(x)))
        return self.fc3(self.act("r4", self.fc2(x)))


class OptionA(nn.Module):
    """He et al.'s parameter-free shortcut as the common CIFAR ResNet code writes it."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))


class Block(nn.Module):
    def __init__(self, net, cin, cout, stride, key, shortcut="B"):
        super().__init__()
        self.net, self.key = [net], key
        self.conv1, self.bn1 = net.conv(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = net.conv(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if (stride != 1 or cin != cout) and shortcut == "A":
            self.down = OptionA(cin, cout, stride)
        elif stride != 1 or cin != cout:
            self.down = nn.Sequential(net.conv(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        net = self.net[0]
        y = net.act(self.key + "a", self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return net.act(self.key + "b", y + (x if self.down is None else self.down(x)))


class ResNet20(Net):
    shortcut = "B"

    def __init__(self, q, widths=(8, 16, 32)):
        super().__init__(q)
        self.conv1, self.bn1 = self.conv(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for s, w in enumerate(widths):
            for i in range(3):
                blocks.append(Block(self, cin, w, 2 if s and not i else 1, f"b{s}{i}",
                                    self.shortcut))
                cin = w
        self.blocks = nn.ModuleList(blocks)
        self.fc = self.linear(widths[-1], 10)

    def forward(self, x):
        x = self.act("stem", self.bn1(self.conv1(x)))
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))



class ResNet20A(ResNet20):
    shortcut = "A"  # option-A shortcuts: Slice (x[:, :, ::2, ::2]) + Pad in ONNX

class MobileNetV2(Net):
    CFG = ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2))

    def __init__(self, q):
        super().__init__(q)
        self.stem, self.stem_bn = self.conv(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        layers, cin = [], 8
        for t, c, n, s in self.CFG:
            for r in range(n):
                h = cin * t
                layers.append(nn.ModuleList([
                    self.conv(cin, h, 1, bias=False), nn.BatchNorm2d(h),
                    self.conv(h, h, 3, s if r == 0 else 1, 1, groups=h, bias=False),
                    nn.BatchNorm2d(h), self.conv(h, c, 1, bias=False), nn.BatchNorm2d(c)]))
                layers[-1].res = (s if r == 0 else 1) == 1 and cin == c
                layers[-1].expand = t != 1
                cin = c
        self.layers = nn.ModuleList(layers)
        self.head, self.head_bn = self.conv(cin, 64, 1, bias=False), nn.BatchNorm2d(64)
        self.classifier = self.linear(64, 10, scheme="uint8")

    def forward(self, x):
        x = self.act("stem", self.stem_bn(self.stem(x)), six=True)
        for i, (e, ebn, d, dbn, p, pbn) in enumerate(self.layers):
            y = self.act(f"e{i}", ebn(e(x)), six=True) if self.layers[i].expand else x
            y = self.act(f"d{i}", dbn(d(y)), six=True)
            y = pbn(p(y))
            x = x + y if self.layers[i].res else y
        x = self.act("head", self.head_bn(self.head(x)), six=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseNet(Net):
    def __init__(self, q, growth=6, layers=(3, 3)):
        super().__init__(q)
        c = 2 * growth
        self.conv0 = self.conv(3, c, 3, 1, 1, bias=False)
        self.blocks, self.trans = nn.ModuleList(), nn.ModuleList()
        for bi, n in enumerate(layers):
            block = nn.ModuleList()
            for _ in range(n):
                block.append(nn.ModuleList([nn.BatchNorm2d(c), self.conv(c, 4 * growth, 1, bias=False),
                                            nn.BatchNorm2d(4 * growth),
                                            self.conv(4 * growth, growth, 3, 1, 1, bias=False)]))
                c += growth
            self.blocks.append(block)
            if bi < len(layers) - 1:
                self.trans.append(nn.ModuleList([nn.BatchNorm2d(c), self.conv(c, c // 2, 1, bias=False)]))
                c //= 2
        self.final_bn, self.classifier = nn.BatchNorm2d(c), self.linear(c, 10)

    def forward(self, x):
        x = self.conv0(x)
        for bi, block in enumerate(self.blocks):
            for li, (bn1, c1, bn2, c2) in enumerate(block):
                y = c1(self.act(f"{bi}{li}a", bn1(x)))
                y = c2(self.act(f"{bi}{li}b", bn2(y)))
                x = torch.cat([x, y], 1)
            if bi < len(self.trans):
                bn, conv = self.trans[bi]
                x = F.avg_pool2d(conv(self.act(f"t{bi}", bn(x))), 2)
        x = self.act("final", self.final_bn(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


NETS = {"lenet5": (LeNet5, (1, 28, 28), "uint8"), "resnet20": (ResNet20, (3, 16, 16), "int8/ch"),
        "resnet20a": (ResNet20A, (3, 16, 16), "int8/ch"),
        "mobilenetv2": (MobileNetV2, (3, 16, 16), "int8/ch"),
        "densenet": (DenseNet, (3, 16, 16), "int8")}


def make(arch: str, mode: str) -> None:
    cls, shape, scheme = NETS[arch]
    torch.manual_seed(SEED)
    q = Quant(scheme if mode == "qdq" else None)
    net = cls(q).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.2 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + torch.rand(c, generator=g)
    x = torch.randn((BATCH, *shape), generator=g)
    with torch.inference_mode():
        q.calibrating = True
        net(x)
        q.calibrating = False
        logits = net(x).numpy()
    path = OUT / f"{arch}_{mode}.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    np.savez(OUT / f"{arch}_{mode}.npz", x=x.numpy(), logits=logits)
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, |logits| max {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    import sys
    OUT.mkdir(exist_ok=True)
    for arch in sys.argv[1:] or NETS:
        for mode in ("float", "qdq"):
            make(arch, mode)
