"""Bit-level faults on stored tensors and activations.

See docs/FAULTS.md for the fault models, the sampling algorithm and the HDF5 layout of
fault lists.
"""

from .activations import ActivationFaultHook, activation_fault_hook
from .faultlist import FaultList
from .inject import (
    FaultInjector,
    apply_faults,
    inject_faults,
    sample_faults,
    tensors_of,
    undo_faults,
)
from .model import FLIP, KIND_NAMES, SA0, SA1, FaultModel, parse_bits, select_names
from .sampling import DENSE_RATE, bernoulli_positions

__all__ = [
    "ActivationFaultHook",
    "DENSE_RATE",
    "FLIP",
    "FaultInjector",
    "FaultList",
    "FaultModel",
    "KIND_NAMES",
    "SA0",
    "SA1",
    "activation_fault_hook",
    "apply_faults",
    "bernoulli_positions",
    "inject_faults",
    "parse_bits",
    "sample_faults",
    "select_names",
    "tensors_of",
    "undo_faults",
]
