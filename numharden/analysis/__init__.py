"""Model analysis: evaluation metrics, activation sparsity, model description."""

from .evaluate import evaluate, sparsity_observer
from .describe import describe

__all__ = ["evaluate", "describe", "sparsity_observer"]
