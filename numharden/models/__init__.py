"""Model zoo (see zoo.py)."""

from .zoo import ARCHS, build

__all__ = ["ARCHS", "build"]
