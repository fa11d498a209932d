"""Number formats and StoredTensor: what hardware holds for each tensor.

See docs/ARCHITECTURE.md (formats/) for the contract.
"""

from .base import Format, StoredTensor
from .floats import FloatFormat, bf16_from_float32, bf16_to_float32
from .integer import AffineFormat, FixedFormat, IntFormat
from .parse import VALID_SPECS, parse_format

__all__ = [
    "AffineFormat",
    "FixedFormat",
    "FloatFormat",
    "Format",
    "IntFormat",
    "StoredTensor",
    "VALID_SPECS",
    "bf16_from_float32",
    "bf16_to_float32",
    "parse_format",
]
