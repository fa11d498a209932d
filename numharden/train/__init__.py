"""Quantization-aware training: optimizers, schedules, the Trainable wrapper, the loop,
sharpness-aware steps (SAM / ASAM / SAQ) and activation-sparsity regularisation.

>>> from numharden.models import zoo
>>> from numharden.data import load_dataset
>>> model = zoo.build("lenet5", weight_format="int4/ch", abits=4)
>>> trained, history = train(model, load_dataset("fashion-mnist", split="train"),
...                          epochs=20, eval_data=load_dataset("fashion-mnist"))
"""

from .loop import EpochEvent, History, StepEvent, evaluate, train
from .optim import SGD, Adam, Optimizer, make_optimizer
from .schedule import Constant, Cosine, Schedule, Step, Warmup, make_schedule
from .regularize import ActivationL1, SparsityMeter, parse_act_l1
from .sharpness import ASAMStep, SAMStep, SAQStep, make_step, worst_case_sharpness
from .steps import PlainStep, StepResult
from .trainable import Trainable

__all__ = [
    "ASAMStep", "ActivationL1", "Adam", "Constant", "Cosine", "EpochEvent", "History",
    "Optimizer", "PlainStep", "SAMStep", "SAQStep", "SGD", "Schedule", "SparsityMeter", "Step",
    "StepEvent", "StepResult", "Trainable", "Warmup", "evaluate", "make_optimizer",
    "make_schedule", "make_step", "parse_act_l1", "train",
]
