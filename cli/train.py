"""`numharden train`: quantization-aware training of a zoo architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from numharden.errors import ConfigError

from .common import JsonOpt, emit_json, err, handle_errors, load_data_arg, out, pct


def weight_format(wbits: int, per_tensor: bool, fmt: str | None) -> str:
    """Storage format of conv/linear weights from the CLI options."""
    if fmt:
        return fmt
    if wbits == 32:
        return "fp32"
    if not 2 <= wbits <= 8:
        raise ConfigError(f"--wbits must be 2..8 (signed integer codes) or 32 (fp32), got "
                          f"{wbits}; use --weight-format for other formats (e.g. fp16, q4.12)")
    return f"int{wbits}" + ("" if per_tensor else "/ch")


@handle_errors
def train(
    arch: Annotated[str, typer.Option(help="Zoo architecture: lenet5, resnet20, resnet18, "
                                           "mobilenetv2, densenet.")] = "lenet5",
    wbits: Annotated[int, typer.Option(help="Weight bits (2..8 signed integer, 32 = fp32).")] = 4,
    abits: Annotated[int, typer.Option(min=0, max=16, help="Activation bits after every "
                                                           "ReLU (0 = not quantised).")] = 4,
    weight_format_: Annotated[Optional[str], typer.Option(
        "--weight-format", help="Explicit weight format (e.g. int4/ch, uint8, fp16, q4.12); "
                                "overrides --wbits.")] = None,
    per_tensor: Annotated[bool, typer.Option(help="One weight scale per tensor instead of "
                                                  "per output channel.")] = False,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    optimizer: Annotated[str, typer.Option(help="sgd or adam.")] = "sgd",
    lr: Annotated[float, typer.Option(min=0.0)] = 0.05,
    momentum: Annotated[float, typer.Option(min=0.0, max=1.0, help="SGD momentum.")] = 0.9,
    nesterov: Annotated[bool, typer.Option(help="Nesterov momentum (SGD).")] = True,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 5e-4,
    schedule: Annotated[str, typer.Option(help="cosine, step or constant.")] = "cosine",
    milestones: Annotated[Optional[str], typer.Option(
        help="Step schedule epochs, comma separated (e.g. 10,15).")] = None,
    gamma: Annotated[float, typer.Option(min=0.0, help="Step schedule factor.")] = 0.1,
    warmup_epochs: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int, typer.Option(min=0, help="Initialisation and shuffling seed.")] = 0,
    data: Annotated[str, typer.Option(help="Training data: 'fashion-mnist' (train split from "
                                           "$NUMHARDEN_DATA_DIR or the Debian package), an IDX "
                                           "folder, .h5 or .npz with a train split.")] = "fashion-mnist",
    eval_data: Annotated[Optional[str], typer.Option(
        help="Evaluation data; default: the test split of --data.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.h5).")] = ...,
    json_: JsonOpt = False,
) -> None:
    """Train a zoo model with quantization-aware training and save it (recipe included)."""
    from numharden.io import save_model
    from numharden.models import build
    from numharden.train import train as run_training

    fmt = weight_format(wbits, per_tensor, weight_format_)
    train_ds = load_data_arg(data, split="train")
    test_ds = load_data_arg(eval_data or data, split="test")
    model = build(arch, input_shape=train_ds.image_shape,
                  num_classes=max(train_ds.num_classes, test_ds.num_classes),
                  weight_format=fmt, abits=abits or None, seed=seed,
                  meta={"class_names": list(train_ds.class_names)})
    opt = {"name": optimizer, "lr": lr, "weight_decay": weight_decay}
    if optimizer == "sgd":
        opt |= {"momentum": momentum, "nesterov": nesterov}
    sched = {"name": schedule, "warmup_epochs": warmup_epochs}
    if schedule == "step":
        if not milestones:
            raise ConfigError("--schedule step needs --milestones, e.g. --milestones 10,15")
        sched |= {"milestones": [float(m) for m in milestones.split(",")], "gamma": gamma}
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  "
                          "{task.fields[ips]:.0f} img/s  test {task.fields[test]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=json_) as bar:
        task = bar.add_task("train", total=None, epoch="-", loss=0.0, acc=0.0, ips=0.0, test="-")

        def progress(ev):
            if ev.kind == "step":
                bar.update(task, total=ev.steps_per_epoch, completed=ev.step + 1,
                           epoch=f"{ev.epoch + 1}/{ev.epochs}", loss=ev.loss,
                           acc=ev.accuracy, ips=ev.images_per_s)
            else:
                test = "-" if ev.test_accuracy is None else pct(ev.test_accuracy)
                bar.update(task, test=test)
                if not json_:
                    bar.console.print(f"epoch {ev.epoch + 1}/{ev.epochs}: train loss "
                                      f"{ev.train_loss:.4f} acc {pct(ev.train_accuracy)}, "
                                      f"test acc {test}, {ev.images_per_s:.0f} img/s")
        trained, history = run_training(model, train_ds, epochs=epochs, batch_size=batch_size,
                                         optimizer=opt, schedule=sched, seed=seed,
                                         eval_data=test_ds, callback=progress)
    trained.meta["arch"] = arch
    save_model(trained, output)
    result = {"output": str(output), "arch": arch, "weight_format": fmt, "abits": abits,
              "training": trained.meta.get("training", {})}
    if json_:
        emit_json(result)
    else:
        final = history.epochs[-1] if history.epochs else {}
        out.print(f"saved {output}  test accuracy {pct(final.get('test_accuracy'))}")
