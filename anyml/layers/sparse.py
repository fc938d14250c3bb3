"""``SparseEvolution``: a sparse dense layer whose connectivity evolves (sparse evolutionary training)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from anyml._validate import positive_int, real
from anyml.activations import get_activation
from anyml.backend import Array, Backend
from anyml.functional.linear import linear_backward, linear_forward
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase

__all__ = ["SparseEvolution"]


class SparseEvolution(LayerBase):
    r"""A fully connected layer with a sparse, evolving connectivity mask (SET).

    Parameters
    ----------
    n_out : int
        The number of output features.
    zeta : float in [0, 1]
        The fraction of the positive and of the negative active weights (those closest to zero) that
        each rewiring removes. Default 0.3.
    epsilon : float
        The sparsity parameter: the fraction of active connections is
        :math:`\min(1, \epsilon (n_{in} + n_{out}) / (n_{in} n_{out}))`. Default 20.
    act_fn : str, Activation or None
        The elementwise output nonlinearity :math:`f`; ``None`` is the identity. Default ``None``.
    init : str or Initializer
        How ``W`` is drawn (``b`` starts at zero). Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    .. math::

        Y = f\big(X (W \odot M) + b\big), \quad
        \frac{\partial L}{\partial W} = \Big(X^\top \frac{\partial L}{\partial Z}\Big) \odot M, \quad
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z} (W \odot M)^\top, \quad
        \frac{\partial L}{\partial b} = \sum_i \frac{\partial L}{\partial Z_i}

    with :math:`Z = X (W \odot M) + b`. The binary mask :math:`M` (``W_mask``, shape
    ``(n_in, n_out)``) is kept in :attr:`parameters` for checkpoints but has no gradient and is never
    touched by the optimizer.

    The mask starts as an Erdős–Rényi graph with exactly
    :math:`\max(1, \operatorname{round}(d \, n_{in} n_{out}))` active connections at uniformly random
    positions, :math:`d` the density above (drawn on the host from the layer's seed, like ``W``, so one
    seed gives the same layer on every backend; numpy-ml draws each connection independently, so the
    count varies). Inactive weights are kept at zero.

    After every :meth:`update` of a trainable layer, :meth:`evolve_connections` rewires on the device
    (sorts, ``where`` and the backend's seeded generator; no host round trip): it removes the
    :math:`\lfloor \zeta n_+ \rfloor` smallest positive and the :math:`\lfloor \zeta n_- \rfloor`
    negative weights closest to zero among the :math:`n_+` / :math:`n_-` active ones (zero counts as
    positive), and activates the same number of connections at random inactive positions, with new
    weights drawn from :math:`U(-r, r)`, :math:`r = \frac{1}{10}\sqrt{6 / (n_{in} + n_{out})}` (a tenth of
    the Glorot range, so that new connections start small). The number of active connections never
    changes. When fewer inactive positions than removed ones exist (dense layers), removed positions
    are reactivated with new weights. Optimizer state (momentum) is not reset for rewired positions.
    Counts and ranks are int64, exact at any layer size (a float32 rank is exact only up to
    :math:`2^{24}`), and :math:`\zeta` enters the counts as the nearest fraction with a denominator of
    at most :math:`2^{31}`, so that :math:`\lfloor 0.7 \cdot 90 \rfloor` is 63 as written, not the 62
    of float64 arithmetic.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.sparse import SparseEvolution
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> layer = SparseEvolution(30, epsilon=2, backend=be)
    >>> layer.forward(be.rng.normal((4, 20))).shape
    (4, 30)
    >>> int(layer.parameters["W_mask"].sum()), layer.n_active
    (100, 100)
    """

    _trainable_names = ("W", "b")

    def __init__(self, n_out: int, zeta: float = 0.3, epsilon: float = 20, act_fn: Any = None,
                 init: Any = "glorot_uniform", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.n_out = positive_int("SparseEvolution", "n_out", n_out)
        self.zeta = real("SparseEvolution", "zeta", zeta, low=0.0, high=1.0)
        real("SparseEvolution", "epsilon", epsilon, low=0.0, low_open=True)
        self.epsilon = epsilon  # kept as given (an int stays an int in the summary)
        self.n_in: int | None = None
        self.act_fn = get_activation(act_fn)
        self.init = init
        get_initializer(init)  # fail early on an unknown name

    def _config(self) -> dict[str, Any]:
        return {"init": str(self.init), "n_in": self.n_in, "n_out": self.n_out, "zeta": self.zeta,
                "epsilon": self.epsilon, "act_fn": str(self.act_fn)}

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"W": (self.n_in, self.n_out), "b": (self.n_out,), "W_mask": (self.n_in, self.n_out)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if key in ("W", "W_mask") and len(shape) == 2:
            self.n_in = int(shape[0])

    @property
    def density(self) -> float:
        """The target fraction of active connections (needs ``n_in``)."""
        if self.n_in is None:
            msg = "SparseEvolution: the density is known after the first forward (n_in is unset)"
            raise RuntimeError(msg)
        return min(1.0, self.epsilon * (self.n_in + self.n_out) / (self.n_in * self.n_out))

    @property
    def n_active(self) -> int:
        """The number of active connections the mask keeps."""
        size = int(self.n_in) * self.n_out  # type: ignore[arg-type]
        return max(1, min(size, round(self.density * size)))

    def _init_params(self, n_in: int) -> None:
        self.n_in = n_in
        shape = (n_in, self.n_out)
        rng = self.backend.host_rng
        W = get_initializer(self.init, act_fn=self.act_fn)(shape, rng)
        # exactly n_active positions: the smallest n_active of i.i.d. uniform keys
        ranks = rng.random(shape).argsort(axis=None, kind="stable").argsort(kind="stable")
        mask = (ranks.reshape(shape) < self.n_active).astype(W.dtype)
        self._new_param("W", W * mask)
        self._new_param("W_mask", mask)
        self._new_param("b", self.xp.zeros((self.n_out,), dtype=self.backend.dtype,
                                           device=self.backend.device))

    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Compute :math:`Y = f(X (W \\odot M) + b)` for ``X`` of shape ``(n_ex, n_in)``."""
        self._check_input(X, ndim=2, shape="(n_ex, n_in)")
        if not self.is_initialized:
            self._init_params(int(X.shape[1]))
        elif X.shape[1] != self.n_in:
            msg = f"SparseEvolution: expected X of shape (n_ex, {self.n_in}), got {tuple(X.shape)}"
            raise ValueError(msg)
        P = self.parameters
        Z, cache = linear_forward(X, P["W"] * P["W_mask"], P["b"], xp=self.xp)
        Y = self.act_fn(Z)
        self._push(retain_derived, X=X, Z=Z, _linear=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Return :math:`\\partial L/\\partial X`; accumulate the (masked) gradients of ``W`` and ``b``."""
        cache = self._pop(dLdy)
        dZ = self.act_fn.backward(cache["Z"], dLdy)
        dX, dW, db = linear_backward(dZ, cache["_linear"], xp=self.xp)
        self._accumulate(retain_grads, W=dW * self.parameters["W_mask"], b=db)
        return dX

    def update(self, cur_loss: float | None = None, *, check_finite: bool = True) -> None:
        """Apply the optimizer, then rewire with :meth:`evolve_connections` (trainable layers only)."""
        rewire = self.trainable and bool(self.gradients)
        super().update(cur_loss, check_finite=check_finite)
        if rewire:
            self.evolve_connections()

    def evolve_connections(self) -> None:
        """Remove the weakest connections and grow as many new ones at random, on the device.

        See the class Notes; the number of active connections is unchanged.
        """
        if not self.is_initialized:
            msg = "SparseEvolution: evolve_connections needs the parameters (call forward first)"
            raise RuntimeError(msg)
        xp, P, dtype = self.xp, self.parameters, self.backend.dtype
        shape = tuple(P["W"].shape)
        w, m = xp.reshape(P["W"], (-1,)), xp.reshape(P["W_mask"], (-1,))
        active = m > 0
        big = xp.full_like(w, xp.inf)
        drop = xp.zeros_like(active)
        # counts and ranks are int64: a float32 count or rank is exact only up to 2**24
        n_drop = xp.zeros((), dtype=xp.int64, device=w.device)
        for subset, magnitude in ((active & (w >= 0), w), (active & (w < 0), -w)):
            k = _floor_fraction(xp.sum(xp.astype(subset, xp.int64)), self.zeta)
            drop = drop | (_ranks(xp.where(subset, magnitude, big), xp) < k)
            n_drop = n_drop + k
        # candidates: inactive positions first (keys in [0, 1)), then the removed ones ([1, 2))
        keys = self.backend.rng.uniform(w.shape, dtype=dtype)
        keys = xp.where(active, xp.where(drop, keys + 1.0, big), keys)
        grow = _ranks(keys, xp) < n_drop
        limit = 0.1 * math.sqrt(6.0 / (int(shape[0]) + self.n_out))
        new_w = self.backend.rng.uniform(w.shape, -limit, limit, dtype=dtype)
        zero = xp.zeros_like(w)
        keep = active & ~drop
        w = xp.where(grow, new_w, xp.where(keep, w, zero))
        m = xp.astype(grow | keep, dtype)
        P["W"], P["W_mask"] = xp.reshape(w, shape), xp.reshape(m, shape)


def _ranks(keys: Array, xp: Any) -> Array:
    """The rank of each key in ascending order (ties by position), as int64 (exact at any size)."""
    return xp.astype(xp.argsort(xp.argsort(keys, stable=True), stable=True), xp.int64)


#: The largest denominator of the fraction that stands for ``zeta`` in the rewiring counts.
_ZETA_DENOMINATOR = 2**31


def _floor_fraction(n: Array, zeta: float) -> Array:
    r""":math:`\lfloor \zeta n \rfloor` for an int64 count ``n >= 0``, exactly, in int64.

    ``zeta`` in [0, 1] is taken as the nearest fraction :math:`p / q` with
    :math:`q \le 2^{31}` (``3/10`` for ``0.3``: a decimal with up to six digits is exact, so
    :math:`\lfloor 0.7 \cdot 90 \rfloor` is 63, where float64 arithmetic gives 62). With
    :math:`n = a q + r`, :math:`\lfloor n p / q \rfloor = a p + \lfloor r p / q \rfloor`, where
    :math:`a p \le n` and :math:`r p < q^2 \le 2^{62}`, so nothing overflows for any int64 ``n``.
    """
    frac = Fraction(zeta).limit_denominator(_ZETA_DENOMINATOR)
    p, q = frac.numerator, frac.denominator
    return (n // q) * p + ((n % q) * p) // q
