"""Reverse-mode autograd over numharden.ops (see tensor.py and functional.py)."""

from .tensor import Tensor, grad_enabled, no_grad
from . import functional
from .gradcheck import gradcheck

__all__ = ["Tensor", "no_grad", "grad_enabled", "functional", "gradcheck"]
