"""Crossbar (processing-in-memory) arrays: weights as cell conductances that vary.

``VariationSpec`` (frozen) describes the mapping (differential pair or offset,
g_min..g_max, bit slicing or analog cells, layer/column scaling) and the non-idealities
(programming variation, PCM model, drift with compensation, read noise, stuck cells);
``CrossbarInjector(targets, spec)`` draws cells and swaps effective weights into a model.
Formulas, constants and sources: docs/CROSSBAR.md.
"""

from .array import CrossbarInjector, Draw
from .spec import PCM, VariationSpec

__all__ = ["CrossbarInjector", "Draw", "PCM", "VariationSpec"]
