"""Short scans that fix the two free hyper-parameters of the FlatENN models.

* lambda (activation L1): chosen so the activation-sparse model keeps the fault-free
  accuracy of the conventional one (the paper compares models of nearly equal clean
  accuracy). Plain QAT runs of ``--epochs`` epochs for every lambda (0 = conventional).
* rho (SAQ radius): SAQ runs of ``--epochs / 2`` epochs (SAQ gets half the epochs, as in
  the paper) for every rho, judged by clean accuracy and accuracy under bit flips.

Every model is evaluated on the test split (accuracy, activation sparsity) and under
weight bit flips at one BER (``--ber``, ``--trials`` trials on the first ``--images``
test images, through the ordinary sweep engine). Results go to ``scan.md`` and
``scan.json`` next to this file (or ``--md``). Trained models are kept in ``--work`` so
a rerun only evaluates.

Usage, from the repository root::

    NUMHARDEN_THREADS=1 python docs/reproduction/scan.py
    python docs/reproduction/scan.py --data /path/to/idx-folder --work /tmp/scan-other \\
        --md /tmp/scan-other/scan.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def builtin_recipes():
    """weights/train_builtin.py as a module (recipes, train_one, file_name)."""
    spec = importlib.util.spec_from_file_location("train_builtin", ROOT / "weights" / "train_builtin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def quick_faults(path: Path, data: str, ber: float, trials: int, images: int, store: Path) -> dict:
    """Accuracy under weight bit flips at one BER (mean and 95 % interval)."""
    from numharden.campaign import CampaignConfig, run_campaign
    from numharden.campaign.engine import FaultSweepSpec

    spec = FaultSweepSpec(model=str(path), data=data, images=images, kind="flip")
    res = run_campaign(spec, CampaignConfig(bers=(ber,), trials=trials, seed=0), store)
    row = [r for r in res.rows if r.ber == ber][0]
    return {"ber": ber, "trials": row.trials, "mean_acc": row.mean_acc, "ci_lo": row.ci_lo,
            "ci_hi": row.ci_hi}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the lambda scan; the "
                    "SAQ runs get half")
    ap.add_argument("--lambdas", default="0,2e-5,5e-5,1e-4,2e-4,5e-4")
    ap.add_argument("--rhos", default="0.05,0.1,0.2,0.5,1.0")
    ap.add_argument("--ber", type=float, default=0.02)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/numharden-scan"))
    ap.add_argument("--md", type=Path, default=HERE / "scan.md")
    args = ap.parse_args(argv)
    tb = builtin_recipes()
    from numharden.analysis import evaluate
    from numharden.data import load_dataset
    from numharden.io import load_model, save_model

    test = load_dataset(args.data, split="test")
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [("w4a4-sparse", {"act_l1": float(v)}, args.epochs) for v in args.lambdas.split(",")]
    runs += [("w4a4-saq", {"rho": float(v)}, max(args.epochs // 2, 1)) for v in args.rhos.split(",")]
    rows = []
    for key, over, epochs in runs:
        tag = "-".join(f"{k}{v:g}" for k, v in over.items())
        path = args.work / f"{key}-{tag}-e{epochs}.h5"
        t0 = time.time()
        if not path.exists():
            model = tb.train_one(key, epochs=epochs, data=args.data, log=lambda s: None, **over)
            save_model(model, path)
        model = load_model(path)
        ev = evaluate(model, test)
        f = quick_faults(path, args.data, args.ber, args.trials, args.images,
                         args.work / f"sweep-{path.stem}")
        sec = [e["seconds"] for e in model.meta["training"]["results"]["epochs"]]
        rows.append({"recipe": key, **over, "epochs": epochs, "accuracy": ev["accuracy"],
                     "sparsity": ev["activation_sparsity"], "faults": f,
                     "seconds_per_epoch": sum(sec) / len(sec)})
        print(f"{path.name}: acc {ev['accuracy']:.4f} zeros {ev['activation_sparsity']:.4f} "
              f"flip@{args.ber:g} {f['mean_acc']:.4f} [{f['ci_lo']:.4f}, {f['ci_hi']:.4f}] "
              f"({time.time() - t0:.0f} s)", flush=True)
    (args.md.with_suffix(".json")).write_text(json.dumps({"args": {k: str(v) for k, v in
                                                                   vars(args).items()},
                                                          "rows": rows}, indent=1))
    args.md.write_text(render(rows, args))
    print(f"wrote {args.md}")


def render(rows, args) -> str:
    def pct(x):
        return f"{100 * x:.2f}"
    lines = [f"# Hyper-parameter scan ({args.data})", "",
             f"Generated by `python docs/reproduction/scan.py` (data `{args.data}`). Test "
             f"accuracy and activation sparsity on the full test split; bit flips at BER "
             f"{args.ber:g} over all conv/linear weight bits, {args.trials} trials on the "
             f"first {args.images} test images (mean and 95 % interval).", "",
             "| recipe | lambda | rho | epochs | clean acc % | zeros % | acc under flips % | 95 % CI | s/epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["faults"]
        lines.append(f"| {r['recipe']} | {r.get('act_l1', '-')} | {r.get('rho', '-')} | "
                     f"{r['epochs']} | {pct(r['accuracy'])} | {pct(r['sparsity'])} | "
                     f"{pct(f['mean_acc'])} | {pct(f['ci_lo'])}-{pct(f['ci_hi'])} | "
                     f"{r['seconds_per_epoch']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
