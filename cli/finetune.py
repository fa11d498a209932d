"""`numharden finetune`: continue training a trained model (e.g. with SAQ), keeping its
formats, normalisation, class names and activation clips, and its training history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (JsonOpt, ModelArg, check_output, emit_json, handle_errors, load_data_arg,
                     load_model_arg, model_label, out, pct)
from .train import (ActL1Opt, BatchSizeOpt, EtaOpt, GammaOpt, MethodOpt, MilestonesOpt,
                    MomentumOpt, NesterovOpt, PerturbBiasOpt, PerturbBnOpt, RhoOpt, RhoWarmupOpt,
                    ScheduleOpt, WarmupOpt, WeightDecayOpt, optimizer_spec, run_with_progress,
                    schedule_spec, step_spec)


@handle_errors
def finetune(
    model: ModelArg = None,
    method: MethodOpt = "saq",
    rho: RhoOpt = None,
    eta: EtaOpt = None,
    rho_warmup_epochs: RhoWarmupOpt = 0,
    perturb_bn: PerturbBnOpt = True,
    perturb_bias: PerturbBiasOpt = False,
    act_l1: ActL1Opt = None,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    batch_size: BatchSizeOpt = 128,
    optimizer: Annotated[str, typer.Option(help="sgd or adam (the update rule).")] = "sgd",
    lr: Annotated[float, typer.Option(min=0.0, help="Initial learning rate (smaller than "
                                                    "train's 0.05: the model is trained).")] = 0.01,
    momentum: MomentumOpt = 0.9,
    nesterov: NesterovOpt = True,
    weight_decay: WeightDecayOpt = 5e-4,
    schedule: ScheduleOpt = "cosine",
    milestones: MilestonesOpt = None,
    gamma: GammaOpt = None,
    warmup_epochs: WarmupOpt = 0.0,
    recalibrate: Annotated[bool, typer.Option(
        help="Recalibrate the activation clips first (default: keep the trained ones).")] = False,
    seed: Annotated[int, typer.Option(min=0, help="Shuffling seed.")] = 0,
    data: Annotated[str, typer.Option(help="Training data: 'fashion-mnist' (train split), an "
                                           "IDX folder, .h5 or .npz with a train split.")] = "fashion-mnist",
    eval_data: Annotated[Optional[str], typer.Option(
        help="Evaluation data; default: the test split of --data.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (.h5).")] = ...,
    json_: JsonOpt = False,
) -> None:
    """Fine-tune a trained model (file or built-in name), by default with SAQ; the output
    keeps its weight formats, normalisation and class names and appends to its history."""
    from numharden.io import save_model
    from numharden.train import make_step, train as run_training

    step = make_step(step_spec(method, rho, eta, rho_warmup_epochs, perturb_bn, perturb_bias,
                               act_l1))
    opt = optimizer_spec(optimizer, lr, weight_decay, momentum, nesterov)
    sched = schedule_spec(schedule, warmup_epochs, milestones, gamma)
    check_output(output, model_label(model), data, eval_data)
    m = load_model_arg(model)
    if step.penalty is not None:  # unknown layer names fail before the progress bar
        step.penalty.bind(m.graph)
    train_ds = load_data_arg(data, split="train")
    test_ds = load_data_arg(eval_data or data, split="test")
    for ds, what in ((train_ds, "training data"), (test_ds, "evaluation data")):
        ds.check_for_model(m.num_classes, m.graph.input_shape, what)  # before the progress bar
    trained, _ = run_with_progress(json_, lambda cb: run_training(
        m, train_ds, epochs=epochs, batch_size=batch_size, optimizer=opt, schedule=sched,
        seed=seed, eval_data=test_ds, callback=cb, step=step,
        calibration=None if recalibrate else False))
    save_model(trained, output)
    training = trained.meta["training"]
    result = {"output": str(output), "source": model, "arch": trained.meta.get("arch"),
              "weight_formats": training["recipe"]["weight_formats"],
              "method": step.describe()["name"],
              "training": training}
    if json_:
        emit_json(result)
    else:
        res = training["results"]
        before = (training.get("previous") or [{}])[-1].get("results", {})
        out.print(f"saved {output}  test accuracy {pct(res.get('test_accuracy'))} (before "
                  f"{pct(before.get('test_accuracy'))})  activation zeros "
                  f"{pct(res.get('test_sparsity'))}")
