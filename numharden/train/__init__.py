"""Quantization-aware training: optimizers, schedules, the Trainable wrapper, the loop.

>>> from numharden.models import zoo
>>> from numharden.data import load_dataset
>>> model = zoo.build("lenet5", weight_format="int4/ch", abits=4)
>>> trained, history = train(model, load_dataset("fashion-mnist", split="train"),
...                          epochs=20, eval_data=load_dataset("fashion-mnist"))
"""

from .loop import EpochEvent, History, StepEvent, evaluate, train
from .optim import SGD, Adam, Optimizer, make_optimizer
from .schedule import Constant, Cosine, Schedule, Step, Warmup, make_schedule
from .steps import PlainStep, StepResult
from .trainable import Trainable

__all__ = [
    "Adam", "Constant", "Cosine", "EpochEvent", "History", "Optimizer", "PlainStep", "SGD",
    "Schedule", "Step", "StepEvent", "StepResult", "Trainable", "Warmup", "evaluate",
    "make_optimizer", "make_schedule", "train",
]
