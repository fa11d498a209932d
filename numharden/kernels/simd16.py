"""16-lane float32 vectors (AVX-512 ``zmm``) for Numba kernels, as LLVM intrinsics.

The wide twin of :mod:`.simd`, for the register tiles of :mod:`.conv_fast` on CPUs with
AVX-512F (:data:`AVAILABLE`): a 6-pixel x 32-channel tile holds 12 ``zmm``
accumulators, so each broadcast input feeds twice the lanes and each weight load
twice the pixels of the 8-lane tile. Without AVX-512 LLVM would split every operation
in two and run out of registers; callers use these only when :data:`AVAILABLE`.
Arrays must be 1-D, C-contiguous float32; indices are element offsets and are not
bounds-checked (callers guarantee ``i + 16 <= a.size``).
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16


def _host_has_avx512() -> bool:
    try:
        return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
    except RuntimeError:  # features unknown: stay on 8 lanes
        return False


AVAILABLE = _host_has_avx512()


class F32x16Type(types.Type):
    """Numba type of an LLVM <16 x float> value."""

    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = F32x16Type()
_VEC = ir.VectorType(ir.FloatType(), LANES)
_I32 = ir.IntType(32)
_SPLAT = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _ptr(context, builder, aryty, ary, idx):
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.gep(data, [idx])


def _is_f32_vector(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1


@intrinsic
def wzero(typingctx):
    """All-zero 16-lane vector."""
    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)
    return f32x16(), codegen


@intrinsic
def wload(typingctx, a, i):
    """a[i:i+16] as a vector (unaligned load)."""
    if not (_is_f32_vector(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(p, _VEC.as_pointer()), align=4)
    return f32x16(a, i), codegen


@intrinsic
def wstore(typingctx, a, i, v):
    """a[i:i+16] = v (unaligned store)."""
    if not (_is_f32_vector(a) and isinstance(i, types.Integer) and v == f32x16):
        return None

    def codegen(context, builder, sig, args):
        p = _ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(p, _VEC.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def wbcast(typingctx, a, i):
    """16-lane vector with a[i] in every lane."""
    if not (_is_f32_vector(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        s = builder.load(_ptr(context, builder, sig.args[0], args[0], args[1]))
        v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), s, ir.Constant(_I32, 0))
        return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined), _SPLAT)
    return f32x16(a, i), codegen


@intrinsic
def wfma(typingctx, a, b, c):
    """a * b + c with a single rounding (fused multiply-add), 16 lanes."""
    if not (a == f32x16 and b == f32x16 and c == f32x16):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3),
                                            "llvm.fma.v16f32")
        return builder.call(fn, args)
    return f32x16(a, b, c), codegen
