"""The layers of the numpy-ml ``neural_nets.layers`` API, written against the Array API standard."""

from anyml.layers.attention import DotProductAttention
from anyml.layers.base import LayerBase
from anyml.layers.conv import Conv1D, Conv2D, Deconv2D
from anyml.layers.dense import FullyConnected
from anyml.layers.embedding import Embedding
from anyml.layers.merge import Add, Multiply
from anyml.layers.norm import BatchNorm1D, BatchNorm2D, LayerNorm1D, LayerNorm2D
from anyml.layers.pool import Pool2D
from anyml.layers.rbm import RBM
from anyml.layers.recurrent import LSTM, RNN, LSTMCell, RNNCell
from anyml.layers.shape import Flatten, Identity, Permute, Reshape
from anyml.layers.softmax import Softmax
from anyml.layers.sparse import SparseEvolution

__all__ = [
    "LSTM",
    "RBM",
    "RNN",
    "Add",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv1D",
    "Conv2D",
    "Deconv2D",
    "DotProductAttention",
    "Embedding",
    "Flatten",
    "FullyConnected",
    "Identity",
    "LSTMCell",
    "LayerBase",
    "LayerNorm1D",
    "LayerNorm2D",
    "Multiply",
    "Permute",
    "Pool2D",
    "RNNCell",
    "Reshape",
    "Softmax",
    "SparseEvolution",
]
