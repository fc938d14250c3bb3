"""The layers of the numpy-ml ``neural_nets.layers`` API, written against the Array API standard."""

from anyml.layers.base import LayerBase
from anyml.layers.dense import FullyConnected
from anyml.layers.merge import Add, Multiply
from anyml.layers.shape import Flatten
from anyml.layers.softmax import Softmax

__all__ = [
    "Add",
    "Flatten",
    "FullyConnected",
    "LayerBase",
    "Multiply",
    "Softmax",
]
