"""Model graphs: nodes, the builder, the model with its inference plan, the executor."""

from .graph import INPUT, OPS, Graph, Node, param_shapes
from .model import Model
from .builder import GraphBuilder

__all__ = ["INPUT", "OPS", "Graph", "Node", "Model", "GraphBuilder", "param_shapes"]
