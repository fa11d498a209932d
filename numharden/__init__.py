"""numharden: measure and improve how quantized neural networks survive hardware faults."""

__version__ = "0.1.0"
