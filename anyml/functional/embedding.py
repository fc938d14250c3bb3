r"""Embedding look-ups, optionally pooled over each example, and the weight gradient.

.. math:: Y_{i,t} = W_{x_{i,t}}, \qquad Y^{\text{sum}}_i = \sum_t W_{x_{i,t}}, \qquad
          Y^{\text{mean}}_i = \frac{1}{n_i} \sum_t W_{x_{i,t}}

The gradient wrt. :math:`W` scatters the upstream gradient back to the rows that were read; a row read
several times receives the sum of its gradients. The standard has no scatter-add, so the functions that
need one take it as the argument ``index_add(target, index, source) -> target`` (a backend's
:meth:`~anyml.backend.Backend.index_add`), which must accumulate repeated indices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from anyml.backend import Array, namespace_of, replaceable

__all__ = [
    "POOLS",
    "EmbeddingCache",
    "embedding_backward",
    "embedding_bag_forward",
    "embedding_forward",
]

IndexAdd = Callable[[Array, Array, Array], Array]

#: The pooling modes: ``None`` keeps one vector per id.
POOLS = (None, "sum", "mean")


class EmbeddingCache(NamedTuple):
    """What :func:`embedding_backward` needs.

    Attributes
    ----------
    ids : array of shape (T,)
        Every id that was looked up, flattened.
    segments : array of shape (T,) or None
        The example each id belongs to (ragged input only).
    counts : array of shape (n_ex, 1) or None
        The number of ids of each example, at least 1 (ragged input with mean pooling only).
    in_shape : tuple of int
        ``(n_ex, n_in)`` for rectangular input, ``(n_ex,)`` for ragged input.
    pool : {None, "sum", "mean"}
    W_shape : tuple of int
        ``(vocab_size, n_out)``.
    """

    ids: Array
    segments: Array | None
    counts: Array | None
    in_shape: tuple[int, ...]
    pool: str | None
    W_shape: tuple[int, int]


def _check_pool(pool: str | None) -> None:
    if pool not in POOLS:
        msg = f"embedding: pool must be one of {POOLS}, got {pool!r}"
        raise ValueError(msg)


@replaceable
def embedding_forward(ids: Array, W: Array, pool: str | None = None,
                      xp: Any = None) -> tuple[Array, EmbeddingCache]:
    r"""Look up the rows of ``W`` named by a rectangular array of ids.

    Parameters
    ----------
    ids : integer array of shape (n_ex, n_in)
        Row indices into ``W``, each in ``[0, vocab_size)`` (not checked here).
    W : array of shape (vocab_size, n_out)
    pool : {None, "sum", "mean"}
        ``None`` returns every vector; ``"sum"``/``"mean"`` reduce over the ``n_in`` ids of each example.

    Returns
    -------
    Y : array of shape (n_ex, n_in, n_out), or (n_ex, n_out) when pooled
    cache : EmbeddingCache
    """
    xp = namespace_of(W) if xp is None else xp
    _check_pool(pool)
    n_ex, n_in = (int(d) for d in ids.shape)
    flat = xp.reshape(ids, (-1,))
    Y = xp.reshape(xp.take(W, flat, axis=0), (n_ex, n_in, int(W.shape[1])))
    if pool == "sum":
        Y = xp.sum(Y, axis=1)
    elif pool == "mean":
        Y = xp.mean(Y, axis=1)
    return Y, EmbeddingCache(flat, None, None, (n_ex, n_in), pool, tuple(W.shape))


@replaceable
def embedding_bag_forward(ids: Array, segments: Array, n_ex: int, W: Array, pool: str,
                          index_add: IndexAdd, xp: Any = None) -> tuple[Array, EmbeddingCache]:
    r"""Pool the embeddings of a ragged batch, given as flat ids and the example of each id.

    Parameters
    ----------
    ids : integer array of shape (T,)
        Every id of the batch, example after example.
    segments : integer array of shape (T,)
        ``segments[t]`` is the example (in ``[0, n_ex)``) that ``ids[t]`` belongs to.
    n_ex : int
        The number of examples (some may have no ids: their output is zero).
    W : array of shape (vocab_size, n_out)
    pool : {"sum", "mean"}
    index_add : callable
        Scatter-add along axis 0 that accumulates repeated indices.

    Returns
    -------
    Y : array of shape (n_ex, n_out)
    cache : EmbeddingCache
    """
    xp = namespace_of(W) if xp is None else xp
    if pool not in ("sum", "mean"):
        msg = f"embedding: ragged input needs pool='sum' or 'mean', got {pool!r}"
        raise ValueError(msg)
    Y = xp.zeros((n_ex, int(W.shape[1])), dtype=W.dtype, device=W.device)
    Y = index_add(Y, segments, xp.take(W, ids, axis=0))
    counts = None
    if pool == "mean":
        ones = xp.ones((int(ids.shape[0]), 1), dtype=W.dtype, device=W.device)
        counts = index_add(xp.zeros((n_ex, 1), dtype=W.dtype, device=W.device), segments, ones)
        counts = xp.maximum(counts, xp.ones_like(counts))
        Y = Y / counts
    return Y, EmbeddingCache(ids, segments, counts, (n_ex,), pool, tuple(W.shape))


@replaceable
def embedding_backward(dY: Array, cache: EmbeddingCache, index_add: IndexAdd,
                       xp: Any = None, accumulate_into: Array | None = None, *,
                       zeros_given: bool = False) -> Array:
    r"""The gradient wrt. ``W`` of :func:`embedding_forward` or :func:`embedding_bag_forward`.

    .. math:: \frac{\partial L}{\partial W_v} = \sum_{(i, t):\, x_{i,t} = v} c_i \,
              \frac{\partial L}{\partial Y_{i(,t)}}

    with :math:`c_i = 1` (no pooling, sum) or :math:`1 / n_i` (mean). The ids themselves get no
    gradient.

    Parameters
    ----------
    accumulate_into : array of shape (vocab_size, n_out), optional
        Add the gradient into this array (in place where the backend can) instead of into zeros: a
        layer that accumulates gradients saves a dense ``(vocab_size, n_out)`` temporary and a pass
        over it.
    zeros_given : bool
        ``accumulate_into`` is known to hold zeros (a gradient just flushed): a native fast path
        may then write the gradient over it rather than add into it (the pure path adds).

    Returns
    -------
    dW : array of shape (vocab_size, n_out)
        ``accumulate_into`` plus the gradient, when given.
    """
    xp = namespace_of(dY) if xp is None else xp
    ids, segments, counts, in_shape, pool, W_shape = cache
    n_out = W_shape[1]
    if segments is not None:
        if counts is not None:
            dY = dY / counts
        dE = xp.take(dY, segments, axis=0)
    elif pool is None:
        dE = xp.reshape(dY, (-1, n_out))
    else:
        n_ex, n_in = in_shape
        if pool == "mean":
            dY = dY / n_in
        dE = xp.reshape(xp.broadcast_to(xp.expand_dims(dY, axis=1), (n_ex, n_in, n_out)), (-1, n_out))
    if accumulate_into is None:
        accumulate_into = xp.zeros(W_shape, dtype=dY.dtype, device=dY.device)
    return index_add(accumulate_into, ids, dE)
