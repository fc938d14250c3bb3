r"""Scaled dot-product attention and its gradients wrt. the queries, keys and values.

.. math::

    Z = \frac{Q K^\top}{\sqrt{d_k}}, \qquad A = \operatorname{softmax}(Z), \qquad
    \tilde A = \frac{M \odot A}{1 - p}, \qquad Y = \tilde A V

where the softmax runs over the keys, :math:`M` is an optional dropout keep-mask (ones where a weight
survives) and :math:`p` the drop probability. Every axis before the last two is a batch axis (examples,
heads, ...).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from anyml.backend import Array, namespace_of, replaceable
from anyml.functional.softmax import _softmax, _softmax_grad_inplace

__all__ = ["AttentionCache", "attention_backward", "attention_forward"]



class AttentionCache(NamedTuple):
    """What :func:`attention_backward` needs.

    Attributes
    ----------
    Q, K, V : arrays
        The inputs.
    weights : array of shape (..., n_q, n_kv)
        The attention weights :math:`A` before dropout.
    keep : array or None
        :math:`M / (1 - p)` (``None`` without dropout).
    alpha : float
        The scale applied to :math:`QK^\\top` (:math:`1/\\sqrt{d_k}` or 1).
    """

    Q: Array
    K: Array
    V: Array
    weights: Array
    keep: Array | None
    alpha: float


@replaceable
def attention_forward(Q: Array, K: Array, V: Array, scale: bool = True, keep: Array | None = None,
                      xp: Any = None) -> tuple[Array, AttentionCache]:
    r"""Compute :math:`Y = \tilde A V` (see the module docstring).

    Parameters
    ----------
    Q : array of shape (..., n_q, d_k)
    K : array of shape (..., n_kv, d_k)
    V : array of shape (..., n_kv, d_v)
    scale : bool
        Divide the scores by :math:`\sqrt{d_k}`.
    keep : array of shape (..., n_q, n_kv), optional
        Multiplies the attention weights (a dropout keep-mask already divided by :math:`1 - p`).

    Returns
    -------
    Y : array of shape (..., n_q, d_v)
    cache : AttentionCache
    """
    xp = namespace_of(Q) if xp is None else xp
    alpha = 1.0 / math.sqrt(int(Q.shape[-1])) if scale else 1.0
    Z = xp.matmul(Q, xp.matrix_transpose(K))
    if scale:
        Z *= alpha
    # the scores are an array of our own: shift them in place, then normalize
    Z -= xp.max(Z, axis=-1, keepdims=True)
    A = _softmax(Z, -1, xp)
    del Z
    A_used = A if keep is None else A * keep
    return xp.matmul(A_used, V), AttentionCache(Q, K, V, A, keep, alpha)


@replaceable
def attention_backward(dY: Array, cache: AttentionCache,
                       xp: Any = None) -> tuple[Array, Array, Array]:
    r"""Gradients of :func:`attention_forward`.

    .. math::

        \frac{\partial L}{\partial V} = \tilde A^\top \frac{\partial L}{\partial Y}, \quad
        \frac{\partial L}{\partial A} = \frac{M}{1 - p} \odot \frac{\partial L}{\partial Y} V^\top,
        \quad \frac{\partial L}{\partial Z} = A \odot \Big(\frac{\partial L}{\partial A}
        - \sum_j \frac{\partial L}{\partial A_{\cdot j}} A_{\cdot j}\Big),

        \frac{\partial L}{\partial Q} = \alpha \frac{\partial L}{\partial Z} K, \quad
        \frac{\partial L}{\partial K} = \alpha \Big(\frac{\partial L}{\partial Z}\Big)^\top Q

    Returns
    -------
    dQ, dK, dV : arrays shaped like Q, K and V
    """
    xp = namespace_of(dY) if xp is None else xp
    Q, K, V, A, keep, alpha = cache
    A_used = A if keep is None else A * keep
    dV = xp.matmul(xp.matrix_transpose(A_used), dY)
    dA = xp.matmul(dY, xp.matrix_transpose(V))
    if keep is not None:
        dA *= keep
    dZ = _softmax_grad_inplace(dA, A, -1, xp)  # dA is overwritten
    if alpha != 1.0:
        dZ *= alpha
    dQ = xp.matmul(dZ, K)
    dK = xp.matmul(xp.matrix_transpose(dZ), Q)
    return dQ, dK, dV
