"""``Embedding``: a table of learned vectors looked up by integer id."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from anyml._finite import CHECK_EVERY
from anyml._validate import positive_int
from anyml.backend import Array, Backend
from anyml.functional.embedding import (
    POOLS,
    embedding_backward,
    embedding_bag_forward,
    embedding_forward,
)
from anyml.initializers import get_initializer
from anyml.layers.base import LayerBase, parameters_deferred

__all__ = ["Embedding"]


def _flatten(ids: Any) -> list[int]:
    """The values of nested lists of ids, flattened (Python ints)."""
    out: list[int] = []
    for v in ids:
        if isinstance(v, list | tuple):
            out.extend(_flatten(v))
        else:
            out.append(int(v))
    return out


def _in_host_memory(x: Any) -> bool:
    """Whether ``x`` lives in host memory (DLPack device type CPU or CUDA-pinned host), where
    reading its values costs no device synchronization."""
    try:
        kind = int(x.__dlpack_device__()[0])
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return False
    return kind in (1, 3)  # kDLCPU, kDLCUDAHost


class Embedding(LayerBase):
    r"""An embedding layer: row :math:`v` of ``W`` is the vector of id :math:`v`.

    Parameters
    ----------
    n_out : int
        The length of each embedding vector.
    vocab_size : int
        The number of ids; valid ids are ``0 .. vocab_size - 1``.
    pool : {None, "sum", "mean"}
        ``None`` returns one vector per id, ``(n_ex, n_in, n_out)``; ``"sum"``/``"mean"`` pool the
        vectors of each example into one, ``(n_ex, 1, n_out)`` as in numpy-ml (and then accept ragged
        input). Default ``None``.
    init : str or Initializer
        How ``W`` is drawn. Default ``"glorot_uniform"``.
    optimizer : str, dict, Optimizer or None
        The update rule of :meth:`update`; ``None`` is ``SGD()``.
    backend : str or Backend, optional
        Where the parameters live; default the current backend.

    Notes
    -----
    .. math:: Y_{i,t} = W_{x_{i,t}}, \quad Y^{\text{sum}}_i = \sum_t W_{x_{i,t}}, \quad
              Y^{\text{mean}}_i = \frac{1}{n_i} \sum_t W_{x_{i,t}}

    Backward scatters the upstream gradient to the rows that were read, summing over repeated ids:

    .. math:: \frac{\partial L}{\partial W_v} = \sum_{(i,t):\, x_{i,t} = v} c_i
              \frac{\partial L}{\partial Y_{i(,t)}}

    with :math:`c_i = 1` (no pooling, sum) or :math:`1/n_i` (mean), every occurrence of a repeated
    id counting (as in PyTorch; numpy-ml's pooled backward counts an id repeated within one example
    once). Ids are indices, so there is no gradient wrt. the input and :meth:`backward` returns
    ``None``: the layer comes first in a network.

    ``W`` (``(vocab_size, n_out)``) is created when the layer is built, since its shape is known then.
    Ids are validated (integer dtype, within ``[0, vocab_size)``) at every call; an example of a ragged
    batch with no ids pools to a zero vector. Ids given as Python lists, or as arrays in host memory
    (NumPy, array-api-strict, torch on the CPU), are range-checked at once and raise ``ValueError``.
    Ids already on a device (CuPy, torch on CUDA) are checked without a host synchronization: an id
    out of range is looked up modulo ``vocab_size`` (never outside ``W``) and reported by a
    ``ValueError`` at the next finiteness check of :meth:`update` (the first update and every
    :data:`anyml._finite.CHECK_EVERY` updates, where the host reads a device flag anyway), or at
    once by :meth:`check_ids`.

    Examples
    --------
    >>> import anyml
    >>> from anyml.layers.embedding import Embedding
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> emb = Embedding(4, vocab_size=10, pool="mean", backend=be)
    >>> emb.forward([[1, 2, 3], [4]]).shape
    (2, 1, 4)
    >>> emb.forward([be.asarray([1, 2], dtype="int64"), be.asarray([3], dtype="int64")]).shape
    (2, 1, 4)
    """

    _trainable_names = ("W",)
    #: the flushed zeros are remembered: the backward's first scatter may write over them
    _fresh_gradients = frozenset(_trainable_names)

    def __init__(self, n_out: int, vocab_size: int, pool: str | None = None,
                 init: Any = "glorot_uniform", optimizer: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.n_out = positive_int("Embedding", "n_out", n_out)
        self.vocab_size = positive_int("Embedding", "vocab_size", vocab_size)
        if pool not in POOLS:
            msg = f"Embedding: pool must be one of {POOLS}, got {pool!r}"
            raise ValueError(msg)
        self.pool = pool
        self.init = init
        get_initializer(init)  # fail early on an unknown name
        # whether the ids looked up on a device were in range: 0-d flags on the device (see
        # _device_ids), and the calls of _finite_parts so far
        self._ids_pending: list[Array] = []
        self._flag_calls = 0
        if not parameters_deferred():  # a checkpoint or set_params supplies W
            self._init_params()

    def _config(self) -> dict[str, Any]:
        return {"init": str(self.init), "pool": self.pool, "n_out": self.n_out,
                "vocab_size": self.vocab_size}

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {"W": (self.vocab_size, self.n_out)}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        if key == "W" and len(shape) == 2:
            self.vocab_size, self.n_out = (int(d) for d in shape)

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        if key == "pool" and value not in POOLS:
            msg = f"Embedding.set_params: pool must be one of {POOLS}, got {value!r}"
            raise ValueError(msg)
        super()._set_hyperparameter(key, value)

    def _init_params(self) -> None:
        weights = get_initializer(self.init)
        self._new_param("W", weights((self.vocab_size, self.n_out), self.backend.host_rng))

    # ------------------------------------------------------------------ ids
    def _check_ids(self, ids: Any, name: str = "X", *, in_range: bool = False) -> Array:
        """Return ``ids`` as an int64 array of this backend after checking dtype and range.

        Nested Python lists of ints are host data: their range is checked on the host before the
        upload. Arrays must already be on this backend (as for every layer input); those in host
        memory (NumPy, array-api-strict, torch on the CPU: DLPack device type CPU) are checked at
        once, and those on a device without a host read (see :meth:`_device_ids`). ``in_range``:
        the caller has already checked the values on the host.
        """
        xp = self.xp
        if isinstance(ids, list | tuple):
            if not in_range:
                self._check_host_ids(_flatten(ids), name)
            ids = self.backend.asarray(ids)
            in_range = True
        else:
            self.backend.check_array(ids, "Embedding", name)
        if ids.dtype != xp.int64 and not xp.isdtype(ids.dtype, "integral"):
            msg = (f"Embedding: expected {name} to hold integer ids, got dtype {ids.dtype}; "
                   f"convert it with backend.asarray({name}, dtype='int64') if it holds whole "
                   f"numbers")
            raise TypeError(msg)
        ids = ids if ids.dtype == xp.int64 else xp.astype(ids, xp.int64)
        if in_range or math.prod(ids.shape) == 0:
            return ids
        if _in_host_memory(ids):  # two reductions read on the host, not a device sync
            low, high = int(xp.min(ids)), int(xp.max(ids))
            if low < 0 or high >= self.vocab_size:
                self._raise_out_of_range(low if low < 0 else high, name)
            return ids
        return self._device_ids(ids)

    def _check_host_ids(self, values: list[int], name: str) -> None:
        """Range-check ids given as Python ints (host data, before their upload)."""
        if values:
            low, high = min(values), max(values)
            if low < 0 or high >= self.vocab_size:
                self._raise_out_of_range(low if low < 0 else high, name)

    def _raise_out_of_range(self, bad: int, name: str) -> None:
        msg = (f"Embedding: ids must lie in [0, {self.vocab_size}) (vocab_size={self.vocab_size}), "
               f"got {bad} in {name}")
        raise ValueError(msg)

    def _device_ids(self, ids: Array) -> Array:
        """Ids on a device, range-checked without a host sync.

        The look-up uses ``ids % vocab_size``, which never reads outside ``W`` (an id in range is
        unchanged), and whether every id was in range is a 0-d flag kept on the device (two small
        kernels). The flags join the layer's finiteness flag at the updates where the host reads
        it anyway (the first and every :data:`anyml._finite.CHECK_EVERY`, see
        :meth:`~anyml.layers.base.LayerBase.update`): an out-of-range id then raises ``ValueError``
        naming the update, instead of a NaN report. :meth:`check_ids` reads them at once.
        """
        safe = ids % self.vocab_size
        self._ids_pending.append(self.xp.all(safe == ids))
        if len(self._ids_pending) > CHECK_EVERY:  # many look-ups between updates: fold them
            self._ids_pending = [self._all(self._ids_pending)]
        return safe

    def _all(self, flags: list[Array]) -> Array:
        return flags[0] if len(flags) == 1 else self.xp.all(self.xp.stack(flags))

    def check_ids(self) -> None:
        """Raise ``ValueError`` if an id out of ``[0, vocab_size)`` was looked up on a device (one
        host read of a device flag; ids in host memory are checked at every call instead)."""
        self._raise_if_ids_bad(None)

    def _raise_if_ids_bad(self, step: int | None) -> None:
        if not self._ids_pending:
            return
        ok = self._all(self._ids_pending)
        self._ids_pending = [ok]
        if bool(ok):
            return
        self._ids_pending = []  # reported once
        when = "" if step is None else f" (at or before update {step})"
        msg = (f"Embedding: ids must lie in [0, {self.vocab_size}) (vocab_size={self.vocab_size}), "
               f"but an id out of range was looked up on the device{when}; it was read modulo "
               f"vocab_size. Check the ids (layer.check_ids() reads this flag at once)")
        raise ValueError(msg)

    def _extra_finite_parts(self) -> list[Array]:
        """At the updates where the host reads the finiteness flags (the first and every
        :data:`~anyml._finite.CHECK_EVERY`), the range flag of the ids looked up on a device (kept,
        folded into one, for the error report)."""
        self._flag_calls += 1
        due = self._flag_calls == 1 or self._flag_calls % CHECK_EVERY == 0
        if due and self._ids_pending:
            ok = self._all(self._ids_pending)
            self._ids_pending = [ok]
            return [ok]
        return []

    def _raise_if_not_finite(self, step: int | None = None) -> None:
        self._raise_if_ids_bad(step)  # a bad id explains a failed flag first
        super()._raise_if_not_finite(step)

    def _rows(self, X: Sequence[Any]) -> list[Any]:
        """Check each example of a list ``X``: a list of Python ints (host data, kept as a list) or a
        1-D integer array of this backend (kept as an int64 array). Ids are range-checked later, once
        for the whole batch, and no array's values are read on the host here."""
        xp, rows = self.xp, []
        for i, seq in enumerate(X):
            if isinstance(seq, list | tuple):
                for value in seq:
                    try:
                        operator.index(value)
                    except TypeError:
                        msg = (f"Embedding: expected X to hold integer ids, X[{i}] holds "
                               f"{value!r}")
                        raise TypeError(msg) from None
                self._check_host_ids([operator.index(v) for v in seq], "X")
                rows.append(list(seq))
                continue
            if not (hasattr(seq, "shape") and hasattr(seq, "dtype")):
                msg = (f"Embedding: each example of a list X must be a list of ints or a 1-D integer "
                       f"array, X[{i}] is a {type(seq).__module__}.{type(seq).__qualname__}")
                raise TypeError(msg)
            self.backend.check_array(seq, "Embedding", f"X[{i}]")
            if seq.ndim != 1:
                msg = (f"Embedding: each example of a list X must be a 1-D sequence of ids, X[{i}] "
                       f"has shape {tuple(seq.shape)}")
                raise ValueError(msg)
            if not xp.isdtype(seq.dtype, "integral"):
                msg = (f"Embedding: expected X to hold integer ids, X[{i}] has dtype {seq.dtype}; "
                       f"convert it with backend.asarray(X[{i}], dtype='int64') if it holds whole "
                       f"numbers")
                raise TypeError(msg)
            rows.append(seq if seq.dtype == xp.int64 else xp.astype(seq, xp.int64))
        return rows

    def _row_array(self, row: Any) -> Array:
        if not isinstance(row, list):
            return row
        if not row:
            return self.xp.zeros((0,), dtype=self.xp.int64, device=self.backend.device)
        return self.backend.asarray(row, dtype="int64")

    def _stack_rows(self, rows: list[Any]) -> Array:
        """Equal-length examples as one ``(n_ex, n_in)`` array (one transfer for host lists)."""
        if all(isinstance(row, list) for row in rows):
            n_in = len(rows[0])
            flat = [int(v) for row in rows for v in row]
            host = self.backend.asarray(flat, dtype="int64") if flat else self._row_array([])
            return self.xp.reshape(host, (len(rows), n_in))
        return self.xp.stack([self._row_array(row) for row in rows], axis=0)

    def _ragged(self, rows: list[Any]) -> tuple[Array, Array, int]:
        """Flatten ragged examples into flat ids and the example index of each id."""
        lengths = [len(row) if isinstance(row, list) else int(row.shape[0]) for row in rows]
        segments = [i for i, length in enumerate(lengths) for _ in range(length)]
        if not segments:
            empty = self._row_array([])
            return empty, empty, len(rows)
        if all(isinstance(row, list) for row in rows):
            flat = self.backend.asarray([int(v) for row in rows for v in row], dtype="int64")
        else:
            flat = self.xp.concat([self._row_array(row) for row, n in zip(rows, lengths, strict=True)
                                   if n > 0], axis=0)
        host = all(isinstance(row, list) for row in rows)  # range-checked by _rows
        return (self._check_ids(flat, in_range=host), self.backend.asarray(segments, dtype="int64"),
                len(rows))

    # ------------------------------------------------------------------ the seed API
    def lookup(self, ids: Any) -> Array:
        """Return the embedding vectors of ``ids`` (shape ``(M,)``) as an ``(M, n_out)`` array."""
        ids = self._check_ids(ids, "ids")
        if ids.ndim != 1:
            msg = f"Embedding: lookup expects ids of shape (M,), got {tuple(ids.shape)}"
            raise ValueError(msg)
        return self.xp.take(self.parameters["W"], ids, axis=0)

    def forward(self, X: Any, retain_derived: bool = True) -> Array:
        """Embed a batch of ids.

        Parameters
        ----------
        X : integer array of shape (n_ex, n_in), or a list of n_ex examples
            Each example of a list is a list of Python ints or a 1-D integer array of this backend.
            Examples of different lengths (a ragged batch) need ``pool``.
        retain_derived : bool
            Keep what :meth:`backward` needs.

        Returns
        -------
        Y : array of shape (n_ex, n_in, n_out), or (n_ex, 1, n_out) when pooled (numpy-ml's shape)
        """
        W = self.parameters["W"]
        rows = self._rows(X) if isinstance(X, list | tuple) else None
        ragged = rows is not None and len({len(row) if isinstance(row, list) else int(row.shape[0])
                                           for row in rows}) > 1
        if ragged and rows is not None:
            if self.pool is None:
                msg = ("Embedding: ragged X (examples of different lengths) needs pool='sum' or "
                       "'mean'")
                raise ValueError(msg)
            ids, segments, n_ex = self._ragged(rows)
            Y, cache = embedding_bag_forward(ids, segments, n_ex, W, self.pool,
                                             self.backend.index_add, xp=self.xp)
        else:
            if rows is not None:  # a list of equal-length examples
                if not rows:
                    msg = "Embedding: expected X with at least one example, got an empty list"
                    raise ValueError(msg)
                X_ids = self._stack_rows(rows)
            else:
                X_ids = X
            host = rows is not None and all(isinstance(row, list) for row in rows)
            ids = self._check_ids(X_ids, in_range=host)  # lists: range-checked by _rows
            if ids.ndim != 2 or (self.pool == "mean" and int(ids.shape[1]) == 0):
                msg = f"Embedding: expected X of shape (n_ex, n_in) with n_in >= 1, got {tuple(ids.shape)}"
                raise ValueError(msg)
            Y, cache = embedding_forward(ids, W, self.pool, xp=self.xp)
        if self.pool is not None:  # numpy-ml's pooled shape keeps a length-1 axis
            Y = self.xp.reshape(Y, (int(Y.shape[0]), 1, self.n_out))
        self._push(retain_derived, X=X, _embedding=cache, _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Array, retain_grads: bool = True) -> None:
        """Accumulate the gradient of ``W``; returns ``None`` (ids have no gradient).

        ``dLdy`` has the shape of the matching forward's output: ``(n_ex, n_in, n_out)``, or
        ``(n_ex, 1, n_out)`` when pooled.
        """
        cache = self._pop(dLdy)
        if self.pool is not None:
            dLdy = self.xp.reshape(dLdy, (int(dLdy.shape[0]), self.n_out))
        if retain_grads and self.trainable:  # scatter straight into the accumulated gradient
            # (just after a flush, known to be zeros: a fast path may write over them)
            zeros_given = self._gradient_is_zero("W")
            self.gradients["W"] = embedding_backward(dLdy, cache["_embedding"], self.backend.index_add,
                                                     xp=self.xp, accumulate_into=self.gradients["W"],
                                                     zeros_given=zeros_given)

