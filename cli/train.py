"""`numharden train`: quantization-aware training of a zoo architecture.

The option types and helpers shared with `numharden finetune` live here too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from numharden.errors import ConfigError

from .common import JsonOpt, check_output, emit_json, err, handle_errors, load_data_arg, out, pct

MethodOpt = Annotated[str, typer.Option(
    help="Training step: sgd (ordinary step; the update itself is --optimizer's, so 'sgd' "
         "works with --optimizer adam too), sam (perturb latents), asam (adaptive SAM) or "
         "saq (perturb the quantised weights). sam/asam/saq cost two forward/backward "
         "passes per step.")]
RhoOpt = Annotated[Optional[float], typer.Option(
    help="Perturbation radius of sam/asam/saq (default 0.05; asam 0.5).", show_default=False)]
EtaOpt = Annotated[Optional[float], typer.Option(
    help="ASAM's eta in T_w = |w| + eta (default 0.01).", show_default=False)]
RhoWarmupOpt = Annotated[int, typer.Option(
    min=0, help="First epochs with rho = 0 (plain steps).")]
PerturbBnOpt = Annotated[bool, typer.Option(help="sam/asam/saq also perturb batch-norm "
                                                 "weight and bias.")]
PerturbBiasOpt = Annotated[bool, typer.Option(help="sam/asam/saq also perturb conv/linear "
                                                   "biases.")]
ActL1Opt = Annotated[Optional[str], typer.Option(
    help="Activation-sparsity penalty lambda/N * ||relu output||_1 per layer: one LAMBDA "
         "for every ReLU, or per layer NODE=LAMBDA,... (e.g. 1e-5 or 1e-5,relu4=0).",
    show_default=False)]

MomentumOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="SGD momentum.")]
NesterovOpt = Annotated[bool, typer.Option(help="Nesterov momentum (SGD).")]
WeightDecayOpt = Annotated[float, typer.Option(min=0.0)]
ScheduleOpt = Annotated[str, typer.Option(help="cosine, step or constant.")]
MilestonesOpt = Annotated[Optional[str], typer.Option(
    help="Step schedule epochs, comma separated (e.g. 10,15).")]
GammaOpt = Annotated[Optional[float], typer.Option(
    min=0.0, help="Step schedule factor (with --schedule step; default 0.1).")]
WarmupOpt = Annotated[float, typer.Option(min=0.0)]
BatchSizeOpt = Annotated[int, typer.Option(min=1)]


def step_spec(method: str, rho, eta, rho_warmup_epochs: int, perturb_bn: bool,
              perturb_bias: bool, act_l1) -> dict:
    """The step spec for numharden.train.make_step from the CLI options."""
    name = method.lower()
    spec = {"name": name}
    if act_l1 is not None:
        spec["act_l1"] = act_l1
    if name in ("sgd", "plain"):
        if rho is not None or eta is not None or rho_warmup_epochs:
            raise ConfigError(f"--rho, --eta and --rho-warmup-epochs apply to --method "
                              f"sam, asam or saq, not {method!r}")
        return spec
    if name not in ("sam", "asam", "saq"):  # make_step names the choices
        return spec
    if eta is not None and name != "asam":
        raise ConfigError(f"--eta applies to --method asam, not {method!r}")
    spec |= {"rho_warmup_epochs": rho_warmup_epochs, "perturb_bn": perturb_bn,
             "perturb_bias": perturb_bias}
    if rho is not None:
        spec["rho"] = rho
    if eta is not None:
        spec["eta"] = eta
    return spec


def optimizer_spec(optimizer: str, lr, weight_decay, momentum, nesterov) -> dict:
    opt = {"name": optimizer, "lr": lr, "weight_decay": weight_decay}
    if optimizer == "sgd":
        opt |= {"momentum": momentum, "nesterov": nesterov}
    return opt


def schedule_spec(schedule: str, warmup_epochs, milestones, gamma) -> dict:
    sched = {"name": schedule, "warmup_epochs": warmup_epochs}
    if schedule != "step":
        for opt, value in (("--milestones", milestones), ("--gamma", gamma)):
            if value is not None:  # never accept an option and ignore it
                raise ConfigError(f"{opt} only applies to --schedule step (the schedule is "
                                  f"{schedule!r}); drop it or add --schedule step")
        return sched
    if not milestones:
        raise ConfigError("--schedule step needs --milestones, e.g. --milestones 10,15")
    try:
        ms = [float(m) for m in milestones.split(",")]
    except ValueError:
        raise ConfigError(f"--milestones {milestones!r} must be comma-separated epoch numbers, "
                          f"e.g. 10,15") from None
    return sched | {"milestones": ms, "gamma": 0.1 if gamma is None else gamma}


def run_with_progress(json_: bool, fn):
    """Call ``fn(callback)`` under a live progress bar (epoch, loss, accuracy, zero
    activations, images/s, test accuracy) and per-epoch lines unless ``json_``."""
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  "
                          "zeros {task.fields[zeros]}  {task.fields[ips]:.0f} img/s  "
                          "test {task.fields[test]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err, disable=json_ or not err.is_terminal, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch="-", loss=0.0, acc=0.0, ips=0.0,
                            test="-", zeros="-")

        def progress(ev):
            if ev.kind == "step":
                bar.update(task, total=ev.steps_per_epoch, completed=ev.step + 1,
                           epoch=f"{ev.epoch + 1}/{ev.epochs}", loss=ev.loss,
                           acc=ev.accuracy, ips=ev.images_per_s, zeros=pct(ev.sparsity))
            else:
                test = "-" if ev.test_accuracy is None else pct(ev.test_accuracy)
                bar.update(task, test=test)
                if not json_:
                    bar.console.print(f"epoch {ev.epoch + 1}/{ev.epochs}: train loss "
                                      f"{ev.train_loss:.4f} acc {pct(ev.train_accuracy)} "
                                      f"zeros {pct(ev.train_sparsity)}, test acc {test} "
                                      f"zeros {pct(ev.test_sparsity)}, "
                                      f"{ev.images_per_s:.0f} img/s")
        return fn(progress)


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
    arch: Annotated[str, typer.Option(help="Zoo architecture: lenet5, resnet20, resnet20a "
                                           "(option-A shortcuts), resnet18, mobilenetv2, "
                                           "densenet.")] = "lenet5",
    wbits: Annotated[int, typer.Option(help="Weight bits (2..8 signed integer, 32 = fp32).")] = 4,
    abits: Annotated[int, typer.Option(min=0, max=16, help="Activation bits after every "
                                                           "ReLU (0 = not quantised).")] = 4,
    weight_format_: Annotated[Optional[str], typer.Option(
        "--weight-format", help="Explicit weight format (e.g. int4/ch, uint8, fp16, q4.12); "
                                "overrides --wbits.")] = None,
    per_tensor: Annotated[bool, typer.Option(help="One weight scale per tensor instead of "
                                                  "per output channel.")] = False,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: BatchSizeOpt = 128,
    optimizer: Annotated[str, typer.Option(help="sgd or adam (the update rule; see "
                                                "--method for the step).")] = "sgd",
    lr: Annotated[float, typer.Option(min=0.0)] = 0.05,
    momentum: MomentumOpt = 0.9,
    nesterov: NesterovOpt = True,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "cosine",
    milestones: MilestonesOpt = None,
    gamma: GammaOpt = None,
    warmup_epochs: WarmupOpt = 0.0,
    method: MethodOpt = "sgd",
    rho: RhoOpt = None,
    eta: EtaOpt = None,
    rho_warmup_epochs: RhoWarmupOpt = 0,
    perturb_bn: PerturbBnOpt = True,
    perturb_bias: PerturbBiasOpt = False,
    act_l1: ActL1Opt = None,
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
    from numharden.train import make_step, train as run_training

    fmt = weight_format(wbits, per_tensor, weight_format_)
    step = make_step(step_spec(method, rho, eta, rho_warmup_epochs, perturb_bn, perturb_bias,
                               act_l1))
    opt = optimizer_spec(optimizer, lr, weight_decay, momentum, nesterov)
    sched = schedule_spec(schedule, warmup_epochs, milestones, gamma)
    check_output(output, data, eval_data)
    train_ds = load_data_arg(data, split="train")
    test_ds = load_data_arg(eval_data or data, split="test")
    model = build(arch, input_shape=train_ds.image_shape,
                  num_classes=max(train_ds.num_classes, test_ds.num_classes),
                  weight_format=fmt, abits=abits or None, seed=seed,
                  meta={"class_names": list(train_ds.class_names)})
    if step.penalty is not None:  # unknown layer names fail before the progress bar
        step.penalty.bind(model.graph)
    trained, _ = run_with_progress(json_, lambda cb: run_training(
        model, train_ds, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
        seed=seed, eval_data=test_ds, callback=cb, step=step))
    trained.meta["arch"] = arch
    save_model(trained, output)
    result = {"output": str(output), "arch": arch, "weight_format": fmt, "abits": abits,
              "method": step.describe()["name"], "training": trained.meta.get("training", {})}
    if json_:
        emit_json(result)
    else:
        res = trained.meta["training"]["results"]
        out.print(f"saved {output}  test accuracy {pct(res.get('test_accuracy'))}  "
                  f"activation zeros {pct(res.get('test_sparsity'))}")
