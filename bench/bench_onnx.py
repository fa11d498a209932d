"""ONNX import/export speed: an 11.7M-parameter ResNet-18 (issue 14 target: import < 2 s).

    python bench/bench_onnx.py [--repeats 5] [--json FILE]

The model is the zoo ResNet-18 (CIFAR stem) with a 1000-class head, 11.69M parameters
like torchvision's ResNet-18, exported by numharden as float (fp32) and as QDQ
(int8/ch weights). Timed: ``from_onnx`` (protobuf parse, constant folding, graph build,
StoredTensor creation), ``to_onnx`` to a file, and as the baseline in the same run
``load_model`` of the same model from numharden's own HDF5 file (full validation and
content checksum). Medians over the repeats after one untimed warm-up call; no JIT is
involved in any of them (pure NumPy + protobuf).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numharden.io import from_onnx, load_model, save_model, to_onnx  # noqa: E402
from numharden.models import build  # noqa: E402


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("fp32", "int8/ch"):
            m = build("resnet18", input_shape=(3, 32, 32), num_classes=1000, weight_format=fmt)
            n = sum(t.size for t in m.params.values())
            onx, h5 = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m.h5")
            save_model(m, h5)
            t_export = median_time(lambda: to_onnx(m, onx, qdq=True), args.repeats)
            t_import = median_time(lambda: from_onnx(onx), args.repeats)
            t_h5 = median_time(lambda: load_model(h5), args.repeats)
            rows.append({"format": fmt, "params": n, "onnx_mb": os.path.getsize(onx) / 2**20,
                         "import_s": t_import, "export_s": t_export, "load_h5_s": t_h5,
                         "import_vs_h5": t_import / t_h5})
    print(f"load average {os.getloadavg()[0]:.2f}\n")
    print("| weights | params | ONNX MiB | from_onnx s | to_onnx s | load_model (.h5) s | import / h5 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['params'] / 1e6:.2f}M | {r['onnx_mb']:.1f} | {r['import_s']:.3f} "
              f"| {r['export_s']:.3f} | {r['load_h5_s']:.3f} | {r['import_vs_h5']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
