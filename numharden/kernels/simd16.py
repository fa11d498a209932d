"""16-lane float32 vectors (AVX-512 ``zmm``) for Numba kernels, as LLVM intrinsics.

The wide twin of :mod:`.simd` (same contracts, made by :func:`.simd.core_ops`), for the
register tiles of :mod:`.conv_fast` on CPUs with AVX-512F (:data:`AVAILABLE`): a
6-pixel x 32-channel tile holds 12 ``zmm`` accumulators, so each broadcast input feeds
twice the lanes of the 8-lane tile. Without AVX-512 LLVM would split every operation
in two and run out of registers; callers use these only when :data:`AVAILABLE`.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
from numba import types

from .simd import core_ops, register_vector

LANES = 16


def _host_has_avx512() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F: the host's features, or those
    given with NUMBA_CPU_NAME / NUMBA_CPU_FEATURES (e.g. a portable 'generic' cache)."""
    if numba.config.CPU_NAME is not None:
        return "+avx512f" in (numba.config.CPU_FEATURES or "").split(",")
    try:
        return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
    except RuntimeError:  # features unknown: stay on 8 lanes
        return False


AVAILABLE = _host_has_avx512()


class F32x16Type(types.Type):
    """Numba type of an LLVM <16 x float> value."""

    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = register_vector(F32x16Type, LANES)
wzero, wload, wstore, wbcast, wfma = core_ops(f32x16, LANES)
