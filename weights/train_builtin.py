"""Train numharden's built-in models (LeNet-5 on Fashion-MNIST) and save them here.

Usage, from the repository root::

    python weights/train_builtin.py                 # every recipe
    python weights/train_builtin.py w4a4            # one of them
    python weights/train_builtin.py w8a8 --epochs 2 --out /tmp/check   # quick check
    python weights/train_builtin.py w4a4-sparse --act-l1 1e-4 --epochs 5 --out /tmp/scan
    python weights/train_builtin.py w4a4 w4a4-saq --data /path/to/idx-folder --out /tmp/other

The four ``w4a4*`` recipes are the FlatENN study (docs/REPRODUCTION.md): conventional,
activation-sparse (L1 penalty on the ReLU outputs), SAQ, and activation-sparse with SAQ;
the SAQ recipes run half the epochs of the conventional ones (one SAQ step costs two
forward/backward passes).

Each recipe is recorded in the saved model (``meta['training']``); see README.md here for
the commands that produced the committed files and their measured accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout

NORMALIZATION = {"mean": [0.2860], "std": [0.3530]}  # Fashion-MNIST train split, [0, 1] pixels
ACT_L1 = 2e-5  # lambda of the activation-sparse models, from the scan in docs/reproduction/scan.md
SAQ_RHO = 0.1  # SAQ radius, from the same scan
RECIPES = {
    "w4a4": {"weight_format": "int4/ch", "abits": 4},
    "w8a8": {"weight_format": "int8/ch", "abits": 8},
    "w4a4-sparse": {"weight_format": "int4/ch", "abits": 4,
                    "step": {"name": "plain", "act_l1": ACT_L1}},
    "w4a4-saq": {"weight_format": "int4/ch", "abits": 4, "epochs": 10,
                 "step": {"name": "saq", "rho": SAQ_RHO}},
    "w4a4-sparse-saq": {"weight_format": "int4/ch", "abits": 4, "epochs": 10,
                        "step": {"name": "saq", "rho": SAQ_RHO, "act_l1": ACT_L1}},
}
COMMON = {
    "epochs": 20, "batch_size": 128, "seed": 0,
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                  "weight_decay": 5e-4},
    "schedule": {"name": "cosine"},
    "calibration": {"batches": 4, "percentile": 99.9},
}


def recipe_step(key: str, act_l1: float | None = None, rho: float | None = None) -> dict:
    """The step spec of recipe ``key``, with optional overrides of lambda and rho."""
    step = dict(RECIPES[key].get("step", {"name": "plain"}))
    if act_l1 is not None:
        step["act_l1"] = act_l1
    if rho is not None and step["name"] != "plain":
        step["rho"] = rho
    return step


def train_one(key: str, *, epochs: int | None = None, data: str = "fashion-mnist",
              eval_data: str | None = None, act_l1: float | None = None,
              rho: float | None = None, log=print):
    """Train recipe ``key`` (see RECIPES) on the training split of ``data`` (default the
    full Fashion-MNIST training set), evaluating on the test split after every epoch;
    returns the exported Model. ``act_l1`` and ``rho`` override the recipe's."""
    from numharden.data import load_dataset
    from numharden.models import zoo
    from numharden.train import train

    recipe = RECIPES[key]
    step = recipe_step(key, act_l1, rho)
    train_data = load_dataset(data, split="train")
    test_data = load_dataset(eval_data or data, split="test")
    how = {"plain": "QAT", "saq": "SAQ"}.get(step["name"], step["name"])
    if step.get("act_l1"):
        how += f", activation L1 {step['act_l1']:g}"
    model = zoo.build("lenet5", input_shape=train_data.image_shape,
                      num_classes=max(train_data.num_classes, test_data.num_classes),
                      weight_format=recipe["weight_format"], abits=recipe["abits"],
                      seed=COMMON["seed"],
                      meta={"class_names": list(train_data.class_names),
                            "description": f"LeNet-5, {train_data.name}, "
                                           f"{recipe['weight_format']} weights, "
                                           f"{recipe['abits']}-bit activations ({how})"})
    start = time.time()

    def progress(event):
        if event.kind == "epoch":
            log(f"[{key}] epoch {event.epoch + 1}/{event.epochs}: train loss "
                f"{event.train_loss:.4f} acc {event.train_accuracy:.4f}, test loss "
                f"{event.test_loss:.4f} acc {event.test_accuracy:.4f} zeros "
                f"{event.test_sparsity:.4f}, lr {event.lr:.4g}, {event.seconds:.1f} s, "
                f"{event.images_per_s:.0f} images/s, {time.time() - start:.0f} s total")

    norm = NORMALIZATION if data == "fashion-mnist" else None
    trained, _ = train(model, train_data,
                       epochs=epochs or recipe.get("epochs", COMMON["epochs"]),
                       batch_size=COMMON["batch_size"], optimizer=dict(COMMON["optimizer"]),
                       schedule=dict(COMMON["schedule"]), seed=COMMON["seed"],
                       eval_data=test_data, callback=progress, normalization=norm,
                       calibration=dict(COMMON["calibration"]), step=step)
    trained.meta["arch"] = "lenet5"
    return trained


def file_name(key: str, data: str = "fashion-mnist") -> str:
    """``lenet5-fmnist-<key>.h5`` for Fashion-MNIST, ``lenet5-<data stem>-<key>.h5`` else."""
    tag = "fmnist" if data == "fashion-mnist" else Path(data).stem.replace("_", "-")
    return f"lenet5-{tag}-{key}.h5"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help=f"recipes to train, of {list(RECIPES)} "
                    "(default: all)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epoch count")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder")
    ap.add_argument("--data", default="fashion-mnist", help="training data (a train split): "
                    "fashion-mnist, an IDX folder, .h5 or .npz")
    ap.add_argument("--eval-data", default=None, help="evaluation data (test split); "
                    "default: --data")
    ap.add_argument("--act-l1", type=float, default=None, help="override lambda")
    ap.add_argument("--rho", type=float, default=None, help="override the SAQ radius")
    args = ap.parse_args(argv)
    unknown = set(args.models) - set(RECIPES)
    if unknown:
        ap.error(f"unknown recipe(s) {sorted(unknown)}; choose from {list(RECIPES)}")
    from numharden.io import save_model

    args.out.mkdir(parents=True, exist_ok=True)
    for key in args.models or list(RECIPES):
        model = train_one(key, epochs=args.epochs, data=args.data, eval_data=args.eval_data,
                          act_l1=args.act_l1, rho=args.rho)
        path = save_model(model, args.out / file_name(key, args.data))
        res = model.meta["training"]["results"]
        print(f"[{key}] saved {path}: test accuracy {res['test_accuracy']:.4f}, activation "
              f"zeros {res['test_sparsity']:.4f}", flush=True)


if __name__ == "__main__":
    main()
