"""``DotProductAttention``: scaled dot-product attention with optional dropout on the weights."""

from __future__ import annotations

from typing import Any

from anyml._validate import real
from anyml.backend import Array, Backend
from anyml.distributed import noise
from anyml.functional.attention import attention_backward, attention_forward
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase

__all__ = ["DotProductAttention"]



class DotProductAttention(LayerBase):
    r"""Dot-product attention: each query takes a softmax-weighted average of the values.

    Parameters
    ----------
    scale : bool
        Divide the query-key scores by :math:`\sqrt{d_k}`. Default True.
    dropout_p : float in [0, 1)
        The probability of dropping each attention weight while training. Default 0.
    init : str or Initializer
        Unused (the layer has no parameters); kept for the common signature and checked.
    optimizer : str, dict, Optimizer or None
        Unused; kept for the common signature.
    backend : str or Backend, optional
        Default the current backend.

    Notes
    -----
    For queries ``Q`` of shape ``(*, n_q, d_k)``, keys ``K`` ``(*, n_kv, d_k)`` and values ``V``
    ``(*, n_kv, d_v)``, where the leading axes ``*`` (examples, heads, ...) must match and may be
    absent: as in numpy-ml, 2-D inputs ``(n_ex, d_k)`` are one set of ``n_ex`` queries attending over
    ``n_ex`` keys, and ``(n_ex, *, d_k)`` inputs attend over their second-to-last axis:

    .. math::

        Z = \frac{Q K^\top}{\sqrt{d_k}}, \quad A = \operatorname{softmax}(Z), \quad
        Y = \frac{M \odot A}{1 - p} V

    with the softmax over the keys and :math:`M` a keep-mask of Bernoulli(:math:`1 - p`) draws from the
    backend's seeded generator. Dropout is active only while :attr:`training` is True and the layer is
    not frozen; the weights are then scaled by :math:`1/(1 - p)` so that their expectation is unchanged
    (inverted dropout), and the mask is kept for the backward pass (and in :attr:`derived_variables` as
    ``dropout_mask``). Backward, with :math:`\alpha = 1/\sqrt{d_k}` (or 1):

    .. math::

        \frac{\partial L}{\partial V} = \Big(\frac{M \odot A}{1 - p}\Big)^\top
        \frac{\partial L}{\partial Y}, \quad
        \frac{\partial L}{\partial Z} = A \odot \big(G - \textstyle\sum_j G_{\cdot j} A_{\cdot j}\big),
        \quad G = \frac{M}{1-p} \odot \frac{\partial L}{\partial Y} V^\top,

        \frac{\partial L}{\partial Q} = \alpha \frac{\partial L}{\partial Z} K, \quad
        \frac{\partial L}{\partial K} = \alpha \Big(\frac{\partial L}{\partial Z}\Big)^\top Q

    :meth:`backward` returns the tuple ``(dQ, dK, dV)``; given numpy-ml's list form (one gradient
    per retained forward pass, oldest first) it returns ``(dQs, dKs, dVs)``, three lists in that order.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.attention import DotProductAttention
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> Q, K, V = be.rng.normal((2, 3, 4)), be.rng.normal((2, 5, 4)), be.rng.normal((2, 5, 6))
    >>> DotProductAttention(backend=be).forward(Q, K, V).shape
    (2, 3, 6)
    """

    def __init__(self, scale: bool = True, dropout_p: float = 0, init: Any = "glorot_uniform",
                 optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        if not isinstance(scale, bool):
            msg = f"DotProductAttention: scale must be True or False, got {scale!r}"
            raise TypeError(msg)
        self.scale = scale
        self.dropout_p = real("DotProductAttention", "dropout_p", dropout_p, low=0.0, high=1.0,
                              high_open=True)
        self.init = init
        get_initializer(init)  # fail early on an unknown name

    def _config(self) -> dict[str, Any]:
        return {"scale": self.scale, "dropout_p": self.dropout_p, "init": str(self.init)}

    def _check_shapes(self, Q: Array, K: Array, V: Array) -> None:
        for name, A in (("Q", Q), ("K", K), ("V", V)):
            self._check_input(A, name=name)
            if A.ndim < 2:
                msg = (f"DotProductAttention: expected {name} with at least 2 axes (n_ex, d) or "
                       f"(n_ex, *, n, d), got shape {tuple(A.shape)}")
                raise ValueError(msg)
        q, k, v = (tuple(int(d) for d in A.shape) for A in (Q, K, V))
        if not (q[:-2] == k[:-2] == v[:-2]) or q[-1] != k[-1] or k[-2] != v[-2]:
            msg = ("DotProductAttention: expected Q (*, n_q, d_k), K (*, n_kv, d_k) and "
                   f"V (*, n_kv, d_v) with matching axes, got Q {q}, K {k}, V {v}")
            raise ValueError(msg)
        if q[-1] == 0 or (len(k) >= 3 and k[-2] == 0):
            what = "d_k = 0 (the scores would be 0 / 0)" if q[-1] == 0 else \
                "no keys (n_kv = 0: a softmax over nothing)"
            msg = f"DotProductAttention: got Q {q}, K {k}, V {v} with {what}; attention needs at least one"
            raise ValueError(msg)

    @property
    def dropout_active(self) -> bool:
        """Whether :meth:`forward` drops weights (``dropout_p > 0``, training, not frozen)."""
        return self.dropout_p > 0 and self.training and self.trainable

    def forward(  # type: ignore[override]  # the seed's signature: three inputs
            self, Q: Array, K: Array, V: Array, retain_derived: bool = True) -> Array:
        """Return the attention output of shape ``(*, n_q, d_v)`` (``(n_ex, d_v)`` for 2-D inputs)."""
        self._check_shapes(Q, K, V)
        keep = mask = None
        if self.dropout_active:
            shape = (*Q.shape[:-1], K.shape[-2])
            mask = noise.draw(self.backend, "bernoulli", shape, 1.0 - self.dropout_p, dtype=Q.dtype)
            keep = mask * (1.0 / (1.0 - self.dropout_p))
        Y, cache = attention_forward(Q, K, V, self.scale, keep, xp=self.xp)
        self._push(retain_derived, X=[Q, K, V], attention_weights=cache.weights, dropout_mask=mask,
                   _attention=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> tuple[Array, Array, Array]:
        """Return ``(dQ, dK, dV)``, the gradients wrt. the three inputs of the matching forward."""
        cache = self._pop(dLdy)
        return attention_backward(dLdy, cache["_attention"], xp=self.xp)

    def _collate_list_grads(self, grads: list[Any]) -> tuple[list[Array], list[Array], list[Array]]:
        """The list form returns ``(dQs, dKs, dVs)``, as numpy-ml does."""
        return ([g[0] for g in grads], [g[1] for g in grads], [g[2] for g in grads])
