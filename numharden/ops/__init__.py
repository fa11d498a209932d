"""NumPy-in, NumPy-out primitives, each with its vector-Jacobian product.

Activations are NHWC, conv weights HWIO, padding a 4-tuple (top, bottom, left, right).
Every op preserves its input dtype (float32 or float64). Inference calls the forwards,
:mod:`numharden.autograd` composes the VJPs (house rule 1: one forward path).
"""

from .conv import conv2d, conv2d_vjp, linear, linear_vjp
from .elementwise import (BatchNormContext, batchnorm_train, batchnorm_train_vjp,
                          channel_affine, hardtanh, hardtanh_vjp, relu, relu6, relu6_vjp,
                          relu_vjp)
from .loss import cross_entropy, cross_entropy_vjp, log_softmax, log_softmax_vjp
from .pool import (avgpool2d, avgpool2d_vjp, global_avgpool, global_avgpool_vjp, maxpool2d,
                   maxpool2d_vjp)
from .quant import act_quant, act_quant_from_codes, act_quant_vjp, fake_quant_weight
from .shape import concat, concat_vjp, flatten, flatten_vjp, subsample_pad, subsample_pad_vjp

__all__ = [
    "conv2d", "conv2d_vjp", "linear", "linear_vjp", "channel_affine",
    "batchnorm_train", "batchnorm_train_vjp", "BatchNormContext",
    "relu", "relu_vjp", "relu6", "relu6_vjp", "hardtanh", "hardtanh_vjp",
    "maxpool2d", "maxpool2d_vjp", "avgpool2d", "avgpool2d_vjp",
    "global_avgpool", "global_avgpool_vjp", "concat", "concat_vjp",
    "flatten", "flatten_vjp", "subsample_pad", "subsample_pad_vjp", "log_softmax", "log_softmax_vjp",
    "cross_entropy", "cross_entropy_vjp",
    "fake_quant_weight", "act_quant", "act_quant_from_codes", "act_quant_vjp",
]
