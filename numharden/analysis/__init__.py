"""Model analysis: evaluation metrics, activation sparsity, model description."""

from .evaluate import evaluate, sparsity_observer
from .describe import describe
from .landscape import filter_normalized_direction, landscape, sharpness

__all__ = ["evaluate", "describe", "sparsity_observer", "landscape", "sharpness",
           "filter_normalized_direction"]
