"""``RBM``: a restricted Boltzmann machine with Bernoulli visible and hidden units, trained by CD-k."""

from __future__ import annotations

import math
from typing import Any

from anyml._validate import positive_int
from anyml.backend import Array, Backend
from anyml.distributed import noise
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase

__all__ = ["RBM"]


def _exp_cap(xp: Any, dtype: Any) -> float:
    """A bound under the log of the largest finite value of ``dtype`` (``exp`` of it is finite)."""
    return math.floor(math.log(float(xp.finfo(dtype).max))) - 1.0


class RBM(LayerBase):
    r"""A restricted Boltzmann machine with binary (Bernoulli) visible and hidden units.

    Parameters
    ----------
    n_out : int
        The number of hidden units.
    K : int
        The number of Gibbs steps of contrastive divergence (CD-K) per gradient. Default 1.
    init : str or Initializer
        How ``W`` is drawn (the biases start at zero). Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    The energy of a visible vector :math:`v` (length ``n_in``) and a hidden vector :math:`h` (length
    ``n_out``) is :math:`E(v, h) = -v^\top W h - b_{in}^\top v - b_{out}^\top h`, so that

    .. math::

        p(h = 1 \mid v) = \sigma(v W + b_{out}), \qquad p(v = 1 \mid h) = \sigma(h W^\top + b_{in})

    :meth:`forward` runs the chain as Hinton's practical guide recommends: from the data :math:`V`,
    :math:`P_H = \sigma(V W + b_{out})` and a binary sample :math:`H_0 \sim P_H`; then for
    :math:`k = 1 .. K`: :math:`P_{V'} = \sigma(H_{k-1} W^\top + b_{in})` (the visible units keep their
    probabilities, they are not sampled), :math:`P_{H'} = \sigma(P_{V'} W + b_{out})`, and a new binary
    sample :math:`H_k \sim P_{H'}` for every step but the last. The samples come from the backend's
    seeded generator and are kept in :attr:`derived_variables` as ``H_samples`` (with ``p_H``,
    ``p_V_prime`` and ``p_H_prime``), so the statistics can be recomputed.

    :meth:`backward` accumulates the CD-K estimate of the negative log-likelihood gradient (negative
    phase minus positive phase, summed over the batch), so that :meth:`update` with SGD descends:

    .. math::

        \Delta W = P_{V'}^\top P_{H'} - V^\top P_H, \quad
        \Delta b_{in} = \textstyle\sum_i (P_{V'} - V)_i, \quad
        \Delta b_{out} = \textstyle\sum_i (P_{H'} - P_H)_i

    Differences from numpy-ml: the number of sampled steps follows the ``K`` given to :meth:`forward`
    (numpy-ml looks at ``self.K`` there), :meth:`reconstruct` leaves accumulated gradients alone
    (numpy-ml flushes them), and :meth:`forward` returns :math:`P_H`.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.rbm import RBM
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> rbm = RBM(3, backend=be)
    >>> X = be.rng.bernoulli((4, 6), 0.5)
    >>> rbm.CD_update(X)
    >>> rbm.reconstruct(X).shape
    (4, 6)
    """

    _trainable_names = ("W", "b_in", "b_out")

    def __init__(self, n_out: int, K: int = 1, init: Any = "glorot_uniform", optimizer: Any = None,
                 *, backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.n_out = positive_int("RBM", "n_out", n_out)
        self.K = positive_int("RBM", "K", K)
        self.n_in: int | None = None
        self.init = init
        get_initializer(init)  # fail early on an unknown name

    def _config(self) -> dict[str, Any]:
        return {"init": str(self.init), "K": self.K, "n_in": self.n_in, "n_out": self.n_out}

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"W": (self.n_in, self.n_out), "b_in": (self.n_in,), "b_out": (self.n_out,)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if key == "W" and len(shape) == 2:
            self.n_in = int(shape[0])
        elif key == "b_in" and len(shape) >= 1:
            self.n_in = int(shape[-1])

    def _init_params(self, n_in: int) -> None:
        self.n_in = n_in
        weights = get_initializer(self.init)
        self._new_param("W", weights((n_in, self.n_out), self.backend.host_rng))
        xp, be = self.xp, self.backend
        self._new_param("b_in", xp.zeros((n_in,), dtype=be.dtype, device=be.device))
        self._new_param("b_out", xp.zeros((self.n_out,), dtype=be.dtype, device=be.device))

    # ------------------------------------------------------------------ helpers
    def _activation(self, A: Array, M: Array, b: Array) -> Array:
        r"""The unit probabilities :math:`\sigma(A M + b)`, as :math:`1 / (1 + e^{-(AM + b)})`.

        The exponent is capped just below the float type's overflow threshold (87 for float32, 708 for
        float64), so ``exp`` never overflows; this only lifts probabilities below :math:`e^{-87}
        \approx 1.6 \cdot 10^{-38}` (float32), at the edge of the subnormal range, to that value."""
        # Deliberately not anyml.activations' two-branch sigmoid (abs, exp, divide, multiply, where):
        # one capped exp and one divide, the bias folded into the negation of the product, is several
        # times faster elementwise on NumPy (measured in benchmarks/RESULTS.md); both agree to within
        # an ulp or two.
        xp = self.xp
        neg = -b - xp.matmul(A, M)  # -(AM + b) in one pass
        e = xp.exp(xp.minimum(neg, _exp_cap(xp, neg.dtype)))  # no clip: it syncs on CuPy
        e += 1.0
        return 1.0 / e

    def _sample(self, p: Array) -> Array:
        u = noise.draw(self.backend, "uniform", tuple(p.shape), dtype=p.dtype)
        return self.xp.astype(u < p, p.dtype)

    def _prepare(self, V: Array) -> None:
        self._check_input(V, ndim=2, shape="(n_ex, n_in)", name="V")
        if not self.is_initialized:
            self._init_params(int(V.shape[1]))
        elif V.shape[1] != self.n_in:
            msg = f"RBM: expected V of shape (n_ex, {self.n_in}), got {tuple(V.shape)}"
            raise ValueError(msg)

    def _gibbs(self, V: Array, K: int) -> dict[str, Any]:
        xp, P = self.xp, self.parameters
        W, W_T = P["W"], xp.matrix_transpose(P["W"])
        p_H = self._activation(V, W, P["b_out"])
        H = self._sample(p_H)
        samples = [H]
        p_V_prime = p_H_prime = None
        for k in range(K):
            p_V_prime = self._activation(H, W_T, P["b_in"])
            p_H_prime = self._activation(p_V_prime, W, P["b_out"])
            if k < K - 1:
                H = self._sample(p_H_prime)
                samples.append(H)
        return {"p_H": p_H, "H_samples": samples, "p_V_prime": p_V_prime, "p_H_prime": p_H_prime}

    # ------------------------------------------------------------------ the seed API
    def forward(  # type: ignore[override]  # the seed's signature
            self, V: Array, K: int | None = None, retain_derived: bool = True) -> Array:
        """Run CD-K from the visible data ``V`` (``(n_ex, n_in)``, values in [0, 1]).

        Parameters
        ----------
        V : array of shape (n_ex, n_in)
        K : int, optional
            The number of Gibbs steps; default ``self.K``.
        retain_derived : bool
            Keep the chain for :meth:`backward` (and :attr:`derived_variables`).

        Returns
        -------
        p_H : array of shape (n_ex, n_out)
            The hidden units' probabilities given ``V``.
        """
        K = self.K if K is None else positive_int("RBM", "K", K)
        self._prepare(V)
        chain = self._gibbs(V, K)
        self._push(retain_derived, X=V, **chain, _shape=tuple(chain["p_H"].shape))
        return chain["p_H"]

    def backward(  # type: ignore[override]  # the seed's signature, plus an optional dLdy
            self, dLdy: Array | None = None, retain_grads: bool = True, *args: Any) -> Array | None:
        r"""Accumulate the gradients of the most recent retained :meth:`forward`.

        Without ``dLdy`` (the seed's call, ``backward()`` or ``backward(retain_grads)``): the CD-K
        estimate of the class Notes; returns ``None``.

        With ``dLdy``, the gradient of a loss wrt. the output :math:`P_H` (what a model container
        passes when the RBM is a layer of a network, e.g. fine-tuned as in a deep belief net): the
        gradient of that loss through :math:`P_H = \sigma(V W + b_{out})`, a sigmoid dense layer,

        .. math::

            G = \frac{\partial L}{\partial P_H} \odot P_H (1 - P_H), \quad
            \frac{\partial L}{\partial V} = G W^\top, \quad
            \frac{\partial L}{\partial W} = V^\top G, \quad
            \frac{\partial L}{\partial b_{out}} = \textstyle\sum_i G_i

        (``b_in`` has no part in it); returns :math:`\partial L / \partial V`. Freeze the layer to
        keep its weights and only pass the gradient on.

        Parameters
        ----------
        dLdy : array of shape (n_ex, n_out), optional
            The upstream gradient; a ``bool`` here is taken as ``retain_grads`` (the seed's
            positional form).
        retain_grads : bool
            Whether to add the parameter gradients into :attr:`gradients`.
        """
        if dLdy is None or isinstance(dLdy, bool):
            retain_grads = retain_grads if dLdy is None else dLdy
            self._contrastive_divergence(self._pop(), bool(retain_grads))
            return None
        cache = self._pop(dLdy)
        xp, W = self.xp, self.parameters["W"]
        p_H, V = cache["p_H"], cache["X"]
        G = dLdy * p_H * (1.0 - p_H)
        ones = xp.ones((1, int(V.shape[0])), dtype=V.dtype, device=V.device)
        self._accumulate(bool(retain_grads), W=xp.matmul(xp.matrix_transpose(V), G),
                         b_out=xp.reshape(xp.matmul(ones, G), (-1,)))
        return xp.matmul(G, xp.matrix_transpose(W))

    def _contrastive_divergence(self, cache: dict[str, Any], retain_grads: bool) -> None:
        """Accumulate the CD-K gradients of one retained forward pass (see the class Notes)."""
        xp = self.xp
        V, p_H, p_V, p_H_prime = cache["X"], cache["p_H"], cache["p_V_prime"], cache["p_H_prime"]
        dW = xp.matmul(xp.matrix_transpose(p_V), p_H_prime)  # negative phase
        dW -= xp.matmul(xp.matrix_transpose(V), p_H)  # minus the positive phase
        # column sums of the differences as products with a row of ones (faster than a reduction)
        ones = xp.ones((1, int(V.shape[0])), dtype=V.dtype, device=V.device)
        self._accumulate(retain_grads, W=dW,
                         b_in=xp.reshape(xp.matmul(ones, p_V - V), (-1,)),
                         b_out=xp.reshape(xp.matmul(ones, p_H_prime - p_H), (-1,)))

    def CD_update(self, X: Array) -> None:
        """Accumulate one CD-K gradient from the data ``X`` (forward then backward).

        As in numpy-ml the parameters change only at :meth:`update`.
        """
        self.forward(X)
        self.backward()

    def reconstruct(self, X: Array, n_steps: int = 10, return_prob: bool = False) -> Array:
        """Run ``n_steps`` Gibbs steps from ``X`` and return the visible units.

        Parameters
        ----------
        X : array of shape (n_ex, n_in)
            The starting visible vectors (unknown entries may be filled at random).
        n_steps : int
            The number of Gibbs steps. Default 10.
        return_prob : bool
            Return the visible probabilities instead of a binary sample of them. Default False.

        Returns
        -------
        V : array of shape (n_ex, n_in)
        """
        n_steps = positive_int("RBM", "n_steps", n_steps)
        self._prepare(X)
        p_V = self._gibbs(X, n_steps)["p_V_prime"]
        return p_V if return_prob else self._sample(p_V)

    def free_energy(self, V: Array) -> Array:
        r"""The free energy :math:`F(v) = -b_{in}^\top v - \sum_j \log(1 + e^{(vW + b_{out})_j})` per
        example (lower means more probable); shape ``(n_ex,)``."""
        self._prepare(V)
        xp, P = self.xp, self.parameters
        z = xp.matmul(V, P["W"]) + P["b_out"]
        softplus = xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))
        return -xp.sum(V * P["b_in"], axis=1) - xp.sum(softplus, axis=1)

