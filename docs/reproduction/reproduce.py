"""Reproduce the FlatENN study (Malhotra and Gupta) with numharden: four 4-bit LeNet-5
models -- conventional, activation-sparse, SAQ, activation-sparse + SAQ -- compared by
activation sparsity, clean accuracy, accuracy under weight bit flips, stuck-at-0 and
stuck-at-1 faults, loss landscapes and sharpness.

Usage, from the repository root::

    # the built-in Fashion-MNIST models; rewrites docs/reproduction/ and the generated
    # block of docs/REPRODUCTION.md
    NUMHARDEN_THREADS=1 python docs/reproduction/reproduce.py --update-doc

    # the same study on other data (IDX folder, .npz or .h5 with train and test splits):
    # trains the four recipes of weights/train_builtin.py on it first
    python docs/reproduction/reproduce.py --data /path/to/idx-folder --out /tmp/study

Fault campaigns use the ordinary sweep engine (``numharden.campaign``, the same code as
``numharden sweep``): every trial draws faults over all bits of the conv/linear weight
codes with probability BER per bit, evaluates the whole test split and undoes them. The
trial seeds depend only on (campaign seed, BER, trial index), and the four models have
identical weight shapes and formats, so trial t of every model sees faults at the same
bit positions: differences between models are paired, and their intervals are paired-t
intervals over trials. Everything lands in ``--out``: ``results.md`` (tables),
``results.json`` (all numbers) and the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

# (key, label, sparse, saq)
MODELS = [("w4a4", "standard", False, False), ("w4a4-sparse", "sparse", True, False),
          ("w4a4-saq", "standard + SAQ", False, True),
          ("w4a4-sparse-saq", "sparse + SAQ", True, True)]
FAULTS = {"flip": "bit flip", "sa0": "stuck-at-0", "sa1": "stuck-at-1"}
# Headline figures of the paper (arXiv 2301.00675; abstract of the final version, v1 in
# brackets). They are maxima over the paper's networks, fault types and rates, not
# LeNet-5-specific values, except the sparsity figures quoted for LeNet-5.
PAPER = {"sparsity_standard": 0.43, "sparsity_sparse": 0.84,
         "max_drop_sparse": "11.13 (v1: 17.32)", "max_gain_saq_standard": "15.82 (v1: 24.76)",
         "max_gain_saq_sparse": "19.50 (v1: 36.71)"}
COMPARISONS = [  # (name, model a, model b, claim): mean accuracy of a minus b
    ("sparse - standard", "w4a4-sparse", "w4a4", "b"),
    ("standard+SAQ - standard", "w4a4-saq", "w4a4", "d"),
    ("sparse+SAQ - sparse", "w4a4-sparse-saq", "w4a4-sparse", "d"),
    ("sparse+SAQ - standard", "w4a4-sparse-saq", "w4a4", "e"),
]


def _train_builtin():
    spec = importlib.util.spec_from_file_location("train_builtin",
                                                  ROOT / "weights" / "train_builtin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def get_models(args) -> dict:
    """key -> model path: the built-ins, or the four recipes trained on ``args.data``."""
    from numharden.io import load_model, save_model
    from numharden.io.hdf5 import resolve_model_path
    if not args.train:
        return {k: Path(resolve_model_path(f"lenet5-fmnist-{k}")) for k, *_ in MODELS}
    tb = _train_builtin()
    args.work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, *_ in MODELS:
        epochs = None
        if args.epochs:
            epochs = max(args.epochs // 2, 1) if "saq" in key else args.epochs
        path = args.work / tb.file_name(key, args.data)
        if not path.exists():
            t0 = time.time()
            model = tb.train_one(key, epochs=epochs, data=args.data, act_l1=args.act_l1,
                                 rho=args.rho, log=lambda s: print(s, flush=True))
            save_model(model, path)
            print(f"trained {path} in {time.time() - t0:.0f} s", flush=True)
        load_model(path)  # fail early on a damaged file
        paths[key] = path
    return paths


# -- measurements ----------------------------------------------------------------------

def describe_models(paths: dict, data: str) -> dict:
    """Clean accuracy, activation sparsity (overall and per layer) and the recipe."""
    from numharden.analysis import evaluate
    from numharden.analysis.evaluate import activation_nodes
    from numharden.data import load_dataset
    from numharden.io import load_model

    test = load_dataset(data, split="test")
    out = {}
    for key, path in paths.items():
        m = load_model(path)
        ev = evaluate(m, test)
        tr = m.meta.get("training", {})
        rec, res = tr.get("recipe", {}), tr.get("results", {})
        secs = [e["seconds"] for e in res.get("epochs", [])]
        out[key] = {
            "file": path.name, "accuracy": ev["accuracy"],
            "sparsity": ev["activation_sparsity"],
            "layer_sparsity": {n: ev["sparsity"][n]["sparsity"] for n in activation_nodes(m.graph)},
            "relu_sparsity": {n: s["sparsity"] for n, s in ev["sparsity"].items()
                              if s["op"] in ("relu", "relu6")},
            "epochs": rec.get("epochs"), "step": rec.get("step"),
            "seconds_per_epoch": sum(secs) / len(secs) if secs else None,
        }
    return out


def run_sweeps(paths: dict, args) -> dict:
    """kind -> key -> {'rows': [...], 'trials': {ber: [(correct, images) per trial]}}."""
    from numharden.campaign import CampaignConfig, run_campaign
    from numharden.campaign.engine import FaultSweepSpec
    from numharden.campaign.store import CampaignStore

    cfg = CampaignConfig(bers=tuple(args.bers), trials=args.trials, seed=args.seed)
    out = {}
    for kind in args.faults:
        out[kind] = {}
        for key, path in paths.items():
            spec = FaultSweepSpec(model=str(path), data=args.data, kind=kind)
            store = args.work / "sweeps" / f"{path.stem}-{spec.model_checksum()[:8]}-{kind}"
            t0 = time.time()
            res = run_campaign(spec, cfg, store, workers=args.workers)
            per_trial = {}
            for (group, ber, trial), rec in CampaignStore.open(store).load().records.items():
                if group is None and ber in cfg.bers and trial >= 0:
                    per_trial.setdefault(ber, {})[trial] = (rec["correct"], rec["n_images"])
            out[kind][key] = {
                "baseline": res.baseline_acc,
                "rows": [{k: getattr(r, k) for k in ("ber", "trials", "mean_acc", "ci_lo",
                                                      "ci_hi", "mean_faults", "mean_masked")}
                         for r in res.rows],
                "trials": {b: [v[t] for t in sorted(v)] for b, v in per_trial.items()}}
            print(f"sweep {kind} {key}: {time.time() - t0:.0f} s", flush=True)
    return out


def paired(sweeps: dict, kind: str, a: str, b: str, ber: float) -> dict:
    """Mean of (accuracy of a - accuracy of b) over the paired trials, 95 % t interval."""
    from numharden.campaign.stats import mean_interval
    ta, tb = sweeps[kind][a]["trials"].get(ber, []), sweeps[kind][b]["trials"].get(ber, [])
    n = min(len(ta), len(tb))
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    d = [(ca - cb) / na for (ca, na), (cb, _) in zip(ta[:n], tb[:n])]  # exact per trial
    iv = mean_interval(d, bounds=(-1.0, 1.0))
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": n}


def run_landscapes(paths: dict, args) -> dict:
    """1-D curves and sharpness (both surfaces) on a fixed test subset."""
    from numharden.analysis.landscape import landscape, sharpness
    from numharden.data import load_dataset
    from numharden.io import load_model

    ds = load_dataset(args.data, split="test")
    ds = ds.subset(min(args.landscape_images, len(ds)))
    out = {}
    for key, path in paths.items():
        m = load_model(path)
        out[key] = {}
        for mode in ("float", "requant"):
            curve = landscape(m, ds.images, ds.labels, dims=1, points=args.points,
                              span=args.span, mode=mode, seed=args.seed)
            sh = [sharpness(m, ds.images, ds.labels, radius=r, directions=args.directions,
                            mode=mode, seed=args.seed + 1) for r in args.radii]
            out[key][mode] = {"alphas": curve["alphas"].tolist(), "loss": curve["loss"].tolist(),
                              "accuracy": curve["accuracy"].tolist(),
                              "sharpness": [{k: s[k] for k in ("radius", "rise", "rise_sem",
                                                               "center_loss")} for s in sh]}
    return out


# -- figures ---------------------------------------------------------------------------

def plot_all(study: dict, out: Path) -> list:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib missing, no figures", flush=True)
        return []
    labels = {k: lab for k, lab, *_ in MODELS}
    styles = {"w4a4": ("C0", "-"), "w4a4-sparse": ("C3", "-"), "w4a4-saq": ("C0", "--"),
              "w4a4-sparse-saq": ("C3", "--")}
    files = []
    kinds = list(study["sweeps"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for key, sw in study["sweeps"][kind].items():
            rows = sw["rows"]
            x = [100 * r["ber"] for r in rows]
            c, ls = styles[key]
            ax.plot(x, [100 * r["mean_acc"] for r in rows], color=c, ls=ls, marker=".",
                    label=labels[key])
            ax.fill_between(x, [100 * r["ci_lo"] for r in rows], [100 * r["ci_hi"] for r in rows],
                            color=c, alpha=0.15)
        ax.set_title(FAULTS[kind])
        ax.set_xlabel("fault rate (% of weight bits)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    files += _save(fig, out / "faults", plt)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, mode in zip(axes, ("float", "requant")):
        for key, ls in study["landscape"].items():
            c, st = styles[key]
            ax.plot(ls[mode]["alphas"], ls[mode]["loss"], color=c, ls=st, label=labels[key])
        ax.set_title("L(Q(w) + a d)" if mode == "float" else "L(Q(w + a d))")
        ax.set_xlabel("a (filter-normalised direction)")
        ax.set_ylabel("test loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    files += _save(fig, out / "landscape", plt)
    return [str(f.relative_to(out)) for f in files]


def _save(fig, stem: Path, plt) -> list:
    paths = []
    for ext in ("png", "svg"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=130, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    plt.close(fig)
    return paths


# -- tables ----------------------------------------------------------------------------

def _p(x, digits=2):
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _signed(x):
    return "-" if x is None else f"{100 * x:+.2f}"


PAPER_RATES = (0.01, 0.05)  # the fault-rate range the paper's claims are made for


def _compare_sharpness(ls: dict, a: str, b: str) -> tuple[list, str]:
    """Per radius: loss rise of a and b on L(Q(w) + r d) (the surface faults act on);
    verdict 'sharper' / 'flatter' (a vs b, difference beyond 2 combined standard errors at
    some radius and never the other way), 'mixed' or 'not resolved'."""
    parts, signs = [], set()
    for sa, sb in zip(ls[a]["float"]["sharpness"], ls[b]["float"]["sharpness"]):
        diff, err = sa["rise"] - sb["rise"], 2 * math.hypot(sa["rise_sem"], sb["rise_sem"])
        if abs(diff) > err:
            signs.add("sharper" if diff > 0 else "flatter")
        parts.append(f"r={sa['radius']}: {sa['rise']:.3f} ± {sa['rise_sem']:.3f} vs "
                     f"{sb['rise']:.3f} ± {sb['rise_sem']:.3f}")
    verdict = signs.pop() if len(signs) == 1 else ("mixed" if signs else "not resolved")
    return parts, verdict


def claims(study: dict) -> list:
    """Claims (a)-(e) evaluated on the numbers: (claim, statement, ours, paper, verdict).

    Fault claims are judged on the paired differences at the rates in PAPER_RATES (all
    faulty rates if none falls there): 'holds' if the difference has the claimed sign
    beyond its 95 % interval in at least half of the (fault, rate) cells and the opposite
    sign in none, 'partly' if in some, 'does not hold' otherwise."""
    md, sw, ls = study["models"], study["sweeps"], study["landscape"]
    faulty = [b for b in study["args"]["bers"] if b > 0]
    faulty = [b for b in faulty if PAPER_RATES[0] <= b <= PAPER_RATES[1]] or faulty
    kinds = list(sw)

    def diffs(a, b):
        return [(k, ber, paired(sw, k, a, b, ber)) for k in kinds for ber in faulty]

    def summary(ds, sign):
        sig = [(k, b, d) for k, b, d in ds if d["n"] and (d["lo"] > 0 if sign > 0 else d["hi"] < 0)]
        opp = [(k, b, d) for k, b, d in ds if d["n"] and (d["hi"] < 0 if sign > 0 else d["lo"] > 0)]
        best = max(ds, key=lambda t: sign * (t[2]["mean"] or 0))
        return sig, opp, best

    rates = f"{_p(faulty[0], 0)}-{_p(faulty[-1], 0)} %"
    out = []
    s0, s1 = md["w4a4"]["sparsity"], md["w4a4-sparse"]["sparsity"]
    out.append(("a", "L1 activation regularisation raises activation sparsity",
                f"{_p(s0, 1)} % -> {_p(s1, 1)} % zeros (clean accuracy {_p(md['w4a4']['accuracy'])} "
                f"vs {_p(md['w4a4-sparse']['accuracy'])} %)",
                f"{_p(PAPER['sparsity_standard'], 0)} % -> {_p(PAPER['sparsity_sparse'], 0)} %",
                "holds" if s1 > s0 + 0.05 else "does not hold"))
    for claim, a, b, text, paper_key, sign in [
            ("b", "w4a4-sparse", "w4a4", "the sparse model is less accurate under faults",
             "max_drop_sparse", -1),
            ("d", "w4a4-saq", "w4a4", "SAQ raises the accuracy under faults (standard)",
             "max_gain_saq_standard", +1),
            ("d", "w4a4-sparse-saq", "w4a4-sparse", "SAQ raises the accuracy under faults (sparse)",
             "max_gain_saq_sparse", +1),
            ("e", "w4a4-sparse-saq", "w4a4", "SAQ-trained sparse beats conventional standard",
             None, +1)]:
        ds = diffs(a, b)
        sig, opp, best = summary(ds, sign)
        k, ber, d = best
        ours = (f"largest {'drop' if sign < 0 else 'gain'} {_signed(d['mean'])} points "
                f"[{_signed(d['lo'])}, {_signed(d['hi'])}] ({FAULTS[k]}, {_p(ber, 0)} %); "
                f"significant in {len(sig)}/{len(ds)} (fault, rate) cells at {rates}, "
                f"opposite in {len(opp)}")
        verdict = ("holds" if len(sig) >= len(ds) / 2 and not opp else
                   "partly" if sig else "does not hold")
        paper = f"up to {PAPER[paper_key]} points" if paper_key else "yes (all rates shown)"
        out.append((claim, text, ours, paper, verdict))
    parts, v = _compare_sharpness(ls, "w4a4-sparse", "w4a4")
    out.insert(2, ("c", "the sparse model sits in a sharper minimum",
                   "loss rise on L(Q(w)+rd), sparse vs standard: " + "; ".join(parts),
                   "sharper (landscape plots)",
                   {"sharper": "holds", "flatter": "opposite: sparse is flatter"}.get(v, v)))
    for key, label in (("w4a4-saq", "standard"), ("w4a4-sparse-saq", "sparse")):
        base = "w4a4" if label == "standard" else "w4a4-sparse"
        parts, v = _compare_sharpness(ls, key, base)
        out.insert(3 if label == "standard" else 4,
                   ("c'", f"SAQ finds a flatter minimum ({label})",
                    f"loss rise on L(Q(w)+rd), SAQ vs conventional: " + "; ".join(parts),
                    "flatter (the paper's mechanism for (d))",
                    {"flatter": "holds", "sharper": "opposite: SAQ is sharper"}.get(v, v)))
    return out


def render(study: dict) -> str:
    md, sw, ls, args = study["models"], study["sweeps"], study["landscape"], study["args"]
    labels = {k: lab for k, lab, *_ in MODELS}
    L = [f"<!-- generated by docs/reproduction/reproduce.py; data {args['data']}; "
         f"{args['trials']} trials per point, campaign seed {args['seed']} -->", "",
         "### Models", "",
         "| model | file | epochs | step | clean accuracy % | activation zeros % | paper zeros % | s / epoch |",
         "|---|---|---|---|---|---|---|---|"]
    for key, label, sparse, saq in MODELS:
        m = md[key]
        step = m["step"] or {}
        desc = step.get("name", "-") + (f" rho {step['rho']:g}" if "rho" in step else "")
        if "act_l1" in step:
            desc += f", L1 {step['act_l1']['lambda']:g}"
        paper = PAPER["sparsity_sparse" if sparse else "sparsity_standard"] if not saq else None
        sec = "-" if m["seconds_per_epoch"] is None else f"{m['seconds_per_epoch']:.1f}"
        L.append(f"| {label} | `{m['file']}` | {m['epochs']} | {desc} | {_p(m['accuracy'])} | "
                 f"{_p(m['sparsity'], 1)} | {_p(paper, 0)} | {sec} |")
    L += ["", "Activation zeros: fraction of exact zeros in the activations the next layers "
          "read (quantiser outputs), over the whole test split. s / epoch: mean wall time per "
          "training epoch as recorded in the file (runs on a shared machine, different kernel "
          "versions; not a benchmark)."]
    layers = list(md["w4a4"]["layer_sparsity"])
    L += ["", "Activation zeros per layer (% of the values the next layer reads):", "",
          "| model | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for key, label, *_ in MODELS:
        L.append(f"| {label} | " + " | ".join(_p(md[key]["layer_sparsity"].get(n), 1)
                                              for n in layers) + " |")
    for kind, per in sw.items():
        bers = [r["ber"] for r in per["w4a4"]["rows"]]
        L += ["", f"### Accuracy under {FAULTS[kind]} faults (%, mean [95 % interval])", "",
              "| fault rate | " + " | ".join(labels[k] for k in per) + " |",
              "|---|" + "---|" * len(per)]
        for i, ber in enumerate(bers):
            cells = []
            for key in per:
                r = per[key]["rows"][i]
                cells.append(f"{_p(r['mean_acc'])} [{_p(r['ci_lo'])}, {_p(r['ci_hi'])}]"
                             if ber > 0 else _p(r["mean_acc"]))
            L.append(f"| {_p(ber, 1)} % | " + " | ".join(cells) + " |")
        faults = per["w4a4"]["rows"][-1]["mean_faults"]
        L.append(f"\nMean faults per trial at the highest rate: {faults:.0f} "
                 f"(masked, i.e. bit already at the stuck value: "
                 f"{per['w4a4']['rows'][-1]['mean_masked']:.0f}).")
    L += ["", "### Paired differences (accuracy points, mean [95 % interval] over trials "
          "with identical fault positions)", "",
          "| comparison | fault | " + " | ".join(f"{_p(b, 1)} %" for b in args["bers"] if b > 0) + " |",
          "|---|---|" + "---|" * len([b for b in args["bers"] if b > 0])]
    for name, a, b, _ in COMPARISONS:
        for kind in sw:
            cells = []
            for ber in (x for x in args["bers"] if x > 0):
                d = paired(sw, kind, a, b, ber)
                cells.append(f"{_signed(d['mean'])} [{_signed(d['lo'])}, {_signed(d['hi'])}]")
            L.append(f"| {name} | {FAULTS[kind]} | " + " | ".join(cells) + " |")
    radii = [s["radius"] for s in ls["w4a4"]["float"]["sharpness"]]
    L += ["", f"### Sharpness (mean test-loss rise over {args['directions']} filter-normalised "
          f"directions x 2 signs, ± standard error; {args['landscape_images']} test images)", "",
          "| model | loss at w | " + " | ".join(f"L(Q(w)+rd), r={r}" for r in radii) + " | "
          + " | ".join(f"L(Q(w+rd)), r={r}" for r in radii) + " |",
          "|---|---|" + "---|" * (2 * len(radii))]
    for key, label, *_ in MODELS:
        f, q = ls[key]["float"]["sharpness"], ls[key]["requant"]["sharpness"]
        L.append(f"| {label} | {f[0]['center_loss']:.4f} | "
                 + " | ".join(f"{s['rise']:.4f} ± {s['rise_sem']:.4f}" for s in f + q) + " |")
    L += ["", "### Claims", "", "| claim | statement | here | paper | verdict |", "|---|---|---|---|---|"]
    for c in claims(study):
        L.append("| (" + c[0] + ") | " + " | ".join(c[1:]) + " |")
    if study.get("figures"):
        L += ["", "Figures: " + ", ".join(f"[`{f}`]({f})" for f in study["figures"]
                                          if f.endswith(".png")) + " (SVG alongside)."]
    return "\n".join(L) + "\n"


BEGIN, END = "<!-- reproduce.py: begin -->", "<!-- reproduce.py: end -->"


def update_doc(doc: Path, text: str, figures_prefix: str) -> None:
    """Replace the generated block of docs/REPRODUCTION.md by ``text``."""
    body = doc.read_text()
    i, j = body.index(BEGIN), body.index(END)
    text = text.replace("](faults.png)", f"]({figures_prefix}faults.png)").replace(
        "](landscape.png)", f"]({figures_prefix}landscape.png)")
    doc.write_text(body[:i + len(BEGIN)] + "\n" + text + body[j:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fashion-mnist", help="dataset with train and test "
                    "splits: fashion-mnist, an IDX folder, .npz or .h5")
    ap.add_argument("--train", action="store_true", help="train the four models (default "
                    "for data other than fashion-mnist; fashion-mnist uses the built-ins)")
    ap.add_argument("--epochs", type=int, default=None, help="conventional epochs when "
                    "training (SAQ gets half); default the recipes' 20 / 10")
    ap.add_argument("--act-l1", type=float, default=None, help="override the recipes' lambda")
    ap.add_argument("--rho", type=float, default=None, help="override the recipes' SAQ rho")
    ap.add_argument("--trials", type=int, default=50, help="trials per (fault, rate, model)")
    ap.add_argument("--bers", default="0,0.001,0.005,0.01,0.02,0.03,0.04,0.05")
    ap.add_argument("--faults", default="flip,sa0,sa1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--landscape-images", type=int, default=1000)
    ap.add_argument("--points", type=int, default=41)
    ap.add_argument("--span", type=float, default=1.0)
    ap.add_argument("--radii", default="0.1,0.25")
    ap.add_argument("--directions", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("/tmp/numharden-repro"),
                    help="trained models and campaign stores (reruns resume)")
    ap.add_argument("--out", type=Path, default=HERE, help="results.md, results.json, figures")
    ap.add_argument("--update-doc", action="store_true",
                    help="also rewrite the generated block of docs/REPRODUCTION.md")
    args = ap.parse_args(argv)
    args.train = args.train or args.data != "fashion-mnist"
    args.bers = [float(b) for b in args.bers.split(",")]
    args.radii = [float(r) for r in args.radii.split(",")]
    args.faults = [f.strip() for f in args.faults.split(",")]
    if 0.0 not in args.bers:
        args.bers = [0.0] + args.bers
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    paths = get_models(args)
    study = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    study["models"] = describe_models(paths, args.data)
    study["sweeps"] = run_sweeps(paths, args)
    study["landscape"] = run_landscapes(paths, args)
    study["figures"] = plot_all(study, args.out)
    study["seconds"] = time.time() - t0
    text = render(study)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(study, indent=1, default=float))
    if args.update_doc:
        doc = ROOT / "docs" / "REPRODUCTION.md"
        update_doc(doc, text, str(args.out.resolve().relative_to(doc.parent.resolve())) + "/")
    print(text)
    print(f"done in {time.time() - t0:.0f} s; results in {args.out}", flush=True)


if __name__ == "__main__":
    main()
