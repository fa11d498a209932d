"""Train numharden's built-in models (LeNet-5 on Fashion-MNIST) and save them here.

Usage, from the repository root::

    python weights/train_builtin.py                 # both models
    python weights/train_builtin.py w4a4            # one of them
    python weights/train_builtin.py w8a8 --epochs 2 --out /tmp/check   # quick check

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
RECIPES = {
    "w4a4": {"weight_format": "int4/ch", "abits": 4},
    "w8a8": {"weight_format": "int8/ch", "abits": 8},
}
COMMON = {
    "epochs": 20, "batch_size": 128, "seed": 0,
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                  "weight_decay": 5e-4},
    "schedule": {"name": "cosine"},
    "calibration": {"batches": 4, "percentile": 99.9},
}


def train_one(key: str, *, epochs: int | None = None, log=print):
    """Train recipe ``key`` ('w4a4' or 'w8a8') on the full Fashion-MNIST training set,
    evaluating on the test set after every epoch; returns the exported Model."""
    from numharden.data import load_dataset
    from numharden.models import zoo
    from numharden.train import train

    recipe = RECIPES[key]
    train_data = load_dataset("fashion-mnist", split="train")
    test_data = load_dataset("fashion-mnist", split="test")
    model = zoo.build("lenet5", weight_format=recipe["weight_format"], abits=recipe["abits"],
                      seed=COMMON["seed"],
                      meta={"class_names": list(train_data.class_names),
                            "description": f"LeNet-5, Fashion-MNIST, {recipe['weight_format']} "
                                           f"weights, {recipe['abits']}-bit activations (QAT)"})
    start = time.time()

    def progress(event):
        if event.kind == "epoch":
            log(f"[{key}] epoch {event.epoch + 1}/{event.epochs}: train loss "
                f"{event.train_loss:.4f} acc {event.train_accuracy:.4f}, test loss "
                f"{event.test_loss:.4f} acc {event.test_accuracy:.4f}, lr {event.lr:.4g}, "
                f"{event.images_per_s:.0f} images/s, {time.time() - start:.0f} s total")

    trained, _ = train(model, train_data, epochs=epochs or COMMON["epochs"],
                       batch_size=COMMON["batch_size"], optimizer=dict(COMMON["optimizer"]),
                       schedule=dict(COMMON["schedule"]), seed=COMMON["seed"],
                       eval_data=test_data, callback=progress, normalization=NORMALIZATION,
                       calibration=dict(COMMON["calibration"]))
    return trained


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help=f"recipes to train, of {list(RECIPES)} "
                    "(default: all)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epoch count")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = ap.parse_args(argv)
    unknown = set(args.models) - set(RECIPES)
    if unknown:
        ap.error(f"unknown recipe(s) {sorted(unknown)}; choose from {list(RECIPES)}")
    from numharden.io import save_model

    for key in args.models or list(RECIPES):
        model = train_one(key, epochs=args.epochs)
        path = save_model(model, args.out / f"lenet5-fmnist-{key}.h5")
        acc = model.meta["training"]["results"]["test_accuracy"]
        print(f"[{key}] saved {path}: test accuracy {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
