"""8-lane float32 vectors (AVX ``ymm``) for Numba kernels, as LLVM intrinsics.

Numba's loop vectoriser cannot keep a tile of accumulators in registers across a
reduction loop; these few intrinsics let a kernel name its vector registers explicitly
(``acc = vfma(vbcast(x, i), vload(w, j), acc)``) so LLVM allocates them as it would C
intrinsics. Arrays must be 1-D, C-contiguous float32; indices are element offsets and
are not bounds-checked (callers guarantee ``i + 8 <= a.size``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8


class F32x8Type(types.Type):
    """Numba type of an LLVM <8 x float> value."""

    def __init__(self):
        super().__init__(name="f32x8")


def register_vector(cls, lanes: int):
    """Give the Numba type ``cls`` (a module-level class, so that cached kernels can
    pickle it) the data model of an LLVM ``<lanes x float>`` value; returns an instance."""

    @register_model(cls)
    class _Model(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, ir.VectorType(ir.FloatType(), lanes))

    return cls()


def _ptr(context, builder, aryty, ary, idx):
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.gep(data, [idx])


def _is_f32_vector(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1


_I32 = ir.IntType(32)


def _splat(builder, s, lanes: int):
    """A ``<lanes x float>`` value with the scalar s in every lane."""
    vec = ir.VectorType(ir.FloatType(), lanes)
    v = builder.insert_element(ir.Constant(vec, ir.Undefined), s, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def core_ops(vt, lanes: int):
    """zero, load, store, broadcast and fused multiply-add intrinsics for vector type
    ``vt`` of ``lanes`` float32 lanes (see the module docstring for the contracts)."""
    vec = ir.VectorType(ir.FloatType(), lanes)

    @intrinsic
    def zero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(vec, [0.0] * lanes)
        return vt(), codegen

    @intrinsic
    def load(typingctx, a, i):
        if not (_is_f32_vector(a) and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _ptr(context, builder, sig.args[0], args[0], args[1])
            return builder.load(builder.bitcast(p, vec.as_pointer()), align=4)
        return vt(a, i), codegen

    @intrinsic
    def store(typingctx, a, i, v):
        if not (_is_f32_vector(a) and isinstance(i, types.Integer) and v == vt):
            return None

        def codegen(context, builder, sig, args):
            p = _ptr(context, builder, sig.args[0], args[0], args[1])
            builder.store(args[2], builder.bitcast(p, vec.as_pointer()), align=4)
            return context.get_dummy_value()
        return types.none(a, i, v), codegen

    @intrinsic
    def bcast(typingctx, a, i):
        if not (_is_f32_vector(a) and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            s = builder.load(_ptr(context, builder, sig.args[0], args[0], args[1]))
            return _splat(builder, s, lanes)
        return vt(a, i), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        if not (a == vt and b == vt and c == vt):
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                f"llvm.fma.v{lanes}f32")
            return builder.call(fn, args)
        return vt(a, b, c), codegen

    zero.__doc__ = "All-zero vector."
    load.__doc__ = f"a[i:i+{lanes}] as a vector (unaligned load)."
    store.__doc__ = f"a[i:i+{lanes}] = v (unaligned store)."
    bcast.__doc__ = "Vector with a[i] in every lane."
    fma.__doc__ = "a * b + c with a single rounding (fused multiply-add)."
    return zero, load, store, bcast, fma


f32x8 = register_vector(F32x8Type, LANES)
vzero, vload, vstore, vbcast, vfma = core_ops(f32x8, LANES)


@intrinsic
def vsplat(typingctx, s):
    """Vector with the float32 scalar s in every lane."""
    if s != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0], LANES)
    return f32x8(s), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b."""
    if not (a == f32x8 and b == f32x8):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return f32x8(a, b), codegen


def _minmax(pred):
    @intrinsic
    def op(typingctx, a, b):
        if not (a == f32x8 and b == f32x8):
            return None

        def codegen(context, builder, sig, args):
            # unordered compare: a NaN in `a` is kept, as np.maximum / np.clip keep it
            return builder.select(builder.fcmp_unordered(pred, args[0], args[1]), args[0], args[1])
        return f32x8(a, b), codegen
    return op


vmax = _minmax(">")
vmax.__doc__ = "Lanewise a if (a > b or a is NaN) else b."
vmin = _minmax("<")
vmin.__doc__ = "Lanewise a if (a < b or a is NaN) else b."


@intrinsic
def vextract(typingctx, v, i):
    """Lane i of v as a float32 scalar."""
    if not (v == f32x8 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i = builder.trunc(args[1], _I32) if args[1].type.width > 32 else args[1]
        return builder.extract_element(args[0], i)
    return types.float32(v, i), codegen



@intrinsic
def vtake(typingctx, v, b, x, y):
    """Lanewise x if (v > b or v is NaN) else y: the max-pool update rule of PyTorch."""
    if not all(t == f32x8 for t in (v, b, x, y)):
        return None

    def codegen(context, builder, sig, args):
        v_, b_, x_, y_ = args
        take = builder.or_(builder.fcmp_ordered(">", v_, b_), builder.fcmp_unordered("uno", v_, v_))
        return builder.select(take, x_, y_)
    return f32x8(v, b, x, y), codegen
