"""``Sequential``: a stack of layers trained end to end with a loss, on any backend.

The container chains the layers' own ``forward``/``backward``/``update`` and adds what training needs
around them: minibatches drawn in a seeded random order, a progress bar, metrics, a history, switching
every layer between training and inference behaviour, moving the whole model between backends, and
checkpoints (:mod:`anyml.checkpoint`).

Data may be host (NumPy) arrays or arrays of the model's backend. :meth:`Sequential.fit`,
:meth:`Sequential.evaluate` and :meth:`Sequential.predict` are the explicit conversion points: they
copy each minibatch to the backend with ``backend.asarray`` (host data stays on the host and only one
minibatch at a time goes to the device). They are also where data is checked, once per call: real
numbers only, integer and boolean data converted to the model's float dtype (integer class labels and
an ``Embedding``'s ids stay integers), no NaN or infinity, class labels in range (see
:class:`anyml._training.Data`). :meth:`Sequential.forward` and :meth:`Sequential.backward` take
arrays of the backend only, like the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np

from anyml._finite import FiniteWatch
from anyml._training import Data, Inference, Progress, Totals, batch_starts
from anyml.backend import Backend, activated, resolve_backend
from anyml.layers.base import LayerBase
from anyml.layers.softmax import Softmax
from anyml.losses import CrossEntropy, Loss, SquaredError, get_loss
from anyml.wrappers import WrapperBase

__all__ = ["Sequential"]

Array = Any
Layer = LayerBase | WrapperBase
Callback = Callable[[int, dict[str, float]], Any]


class Sequential:
    r"""Layers applied one after the other, :math:`y = f_n(\cdots f_2(f_1(X)))`, with a loss.

    Parameters
    ----------
    layers : sequence of layers
        Layers or wrapped layers (:class:`~anyml.wrappers.Dropout`), applied in order.
    loss : str, dict, Loss or None
        :class:`~anyml.losses.SquaredError` or :class:`~anyml.losses.CrossEntropy` (or a spec
        string such as ``"CrossEntropy(from_logits=True)"``). ``None`` makes a model that can only
        :meth:`predict`.
    backend : str or Backend, optional
        Where the model computes. Default: the layers' backend (they must share one library, device
        and dtype). When given, every layer is moved there (:meth:`to`) and then uses this backend
        object, and so its random generator, too.

    Notes
    -----
    **Training step** (:meth:`train_on_batch`): forward through every layer, loss
    :math:`L(y, \hat y)`, gradient :math:`\partial L / \partial \hat y` from ``loss.grad``, backward
    through every layer in reverse, then ``update`` of every layer (which applies its optimizer and
    drops its gradients).

    **Softmax and cross-entropy.** ``CrossEntropy()`` (on probabilities) needs a final
    :class:`~anyml.layers.softmax.Softmax` layer; its gradient, :math:`p - y`, is the gradient wrt.
    the *softmax input*, so training starts the backward pass at the layer below the softmax (the
    softmax Jacobian is applied in closed form instead of dividing by probabilities that may underflow
    to zero). ``CrossEntropy(from_logits=True)`` takes the raw scores of the last layer instead (no
    final softmax): :meth:`predict` then returns scores, whose argmax is the predicted class.

    **Metrics.** The reported loss is the mean per example (for ``reduction="sum"``, the batch sums
    divided by the number of examples), so it does not depend on the batch size. For a cross-entropy
    loss, accuracy is the fraction of argmax predictions that hit the class index (``y`` may hold
    class indices or one-hot rows; an output of shape ``(n_ex, n_t, n_classes)`` makes ``n_t``
    predictions per example).

    **Randomness.** :meth:`fit` draws each epoch's order from ``backend.host_rng`` (NumPy's PCG64, the
    generator that draws the initial weights), so one seed gives the same minibatches, and so the same
    training run, on every backend.

    Examples
    --------
    >>> import numpy as np
    >>> import anyml
    >>> from anyml.layers import FullyConnected, Softmax
    >>> from anyml.model import Sequential
    >>> be = anyml.make_backend("numpy", seed=0)
    >>> model = Sequential([FullyConnected(8, act_fn="ReLU", backend=be),
    ...                     FullyConnected(3, backend=be), Softmax(backend=be)], loss="CrossEntropy")
    >>> X, y = np.random.default_rng(0).normal(size=(60, 4)), np.arange(60) % 3
    >>> history = model.fit(X, y, epochs=2, batch_size=20, verbose=False)
    >>> sorted(history), model.predict(X).shape
    (['accuracy', 'loss'], (60, 3))
    """

    def __init__(self, layers: Iterable[Layer], loss: Any = None, *,
                 backend: str | Backend | None = None) -> None:
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            msg = "Sequential: expected at least one layer, got none"
            raise ValueError(msg)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerBase | WrapperBase):
                msg = (f"Sequential: layer {i} must be an anyml layer or wrapper, got "
                       f"{type(layer).__module__}.{type(layer).__qualname__}")
                raise TypeError(msg)
        if backend is None:
            self.backend = self.layers[0].backend
            for i, layer in enumerate(self.layers):
                if not _same_backend(layer.backend, self.backend):
                    msg = (f"Sequential: layer {i} ({type(layer).__name__}) is on {layer.backend!r} "
                           f"but layer 0 on {self.backend!r}; build the layers on one backend, "
                           f"or pass backend=... to move them all")
                    raise ValueError(msg)
        else:
            self.backend = resolve_backend(backend)
            for layer in self.layers:
                if layer.backend is not self.backend:
                    layer.to(self.backend)
        self.loss: Loss | None = None
        self.set_loss(loss)
        #: Set to True (e.g. by a callback) to stop :meth:`fit` after the current epoch.
        self.stop_training = False

    # ------------------------------------------------------------------ configuration
    def set_loss(self, loss: Any) -> None:
        """Set the loss (anything :func:`~anyml.losses.get_loss` accepts, or ``None``).

        Raises
        ------
        TypeError
            For a loss that does not compare one output with one target (``VAELoss`` needs the
            encoder's outputs too: compute it by hand from :meth:`forward`).
        ValueError
            For ``CrossEntropy()`` on probabilities without a final ``Softmax(dim=-1)`` layer.
        """
        new = None if loss is None else get_loss(loss)
        if new is not None and not isinstance(new, SquaredError | CrossEntropy):
            msg = (f"Sequential: the loss must be SquaredError or CrossEntropy, got {new}; a "
                   f"{type(new).__name__} needs more than the model output, so compute it from "
                   f"forward() and pass its gradient to backward()")
            raise TypeError(msg)
        if isinstance(new, CrossEntropy) and not new.from_logits:
            last = self.layers[-1]
            if not isinstance(last, Softmax) or last.dim != -1:
                msg = (f"Sequential: {new} expects probabilities from a final Softmax(dim=-1) layer, "
                       f"but the last layer is {last!r}; add Softmax() or use "
                       f"CrossEntropy(from_logits=True) on the raw scores")
                raise ValueError(msg)
        self.loss = new

    @property
    def _fused_softmax(self) -> bool:
        """Whether training skips the final Softmax's backward (see the class Notes)."""
        return isinstance(self.loss, CrossEntropy) and not self.loss.from_logits

    def _need_loss(self, what: str) -> Loss:
        if self.loss is None:
            msg = f"Sequential.{what}: the model has no loss; pass loss=... to Sequential or set_loss"
            raise RuntimeError(msg)
        return self.loss

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner},\n], loss={self.loss})"

    # ------------------------------------------------------------------ the layer API, chained
    @activated
    def forward(self, X: Array, retain_derived: bool = True) -> Array:
        """Apply every layer in order to ``X`` (an array of the model's backend)."""
        for layer in self.layers:
            X = layer.forward(X, retain_derived=retain_derived)
        return X

    @activated
    def backward(self, dLdy: Array, retain_grads: bool = True) -> Array:
        """Backpropagate ``dLdy`` (the gradient wrt. the model output) through every layer.

        Returns the gradient wrt. the model input; the layers accumulate their parameter gradients.
        """
        for layer in reversed(self.layers):
            dLdy = layer.backward(dLdy, retain_grads=retain_grads)
        return dLdy

    @activated
    def update(self, cur_loss: float | None = None, *, check_finite: bool | None = None) -> None:
        """Apply every layer's optimizer (frozen layers only drop their gradients).

        The updated parameters of all layers are watched for NaN and infinity together, with a
        flag kept on the device: the host reads it (one synchronization) at the first update, every
        :data:`anyml._finite.CHECK_EVERY` updates, and when ``check_finite=True``; a
        ``FloatingPointError`` names the first bad layer and the update at which it went bad.
        ``check_finite=False`` only records this update's flag.
        """
        flags = []
        for layer in self.layers:
            layer.update(cur_loss, check_finite=False)
            flag = layer._finite_flag()
            if flag is not None:
                flags.append(flag)
        if not flags:
            return
        ok = flags[0]
        for flag in flags[1:]:
            ok = ok & flag
        watch = self.__dict__.setdefault("_finite_watch", FiniteWatch())
        watch.record(ok, self.backend.xp)
        if check_finite or (check_finite is None and watch.due()):
            self.check_finite()

    @activated
    def check_finite(self) -> None:
        """Read the NaN/inf flag of the updates so far (one synchronization); raise
        ``FloatingPointError`` naming the first bad layer and the update where it went bad."""
        watch = self.__dict__.get("_finite_watch")
        step = None if watch is None else watch.first_bad_step()
        if step is not None:
            for layer in self.layers:
                layer._raise_if_not_finite(step)

    @activated
    def flush_gradients(self) -> None:
        """Zero every layer's gradients and drop every retained forward pass."""
        for layer in self.layers:
            layer.flush_gradients()

    def freeze(self) -> None:
        """Freeze every layer (the parameters stop changing)."""
        for layer in self.layers:
            layer.freeze()

    def unfreeze(self) -> None:
        """Unfreeze every layer."""
        for layer in self.layers:
            layer.unfreeze()

    def train(self, mode: bool = True) -> Sequential:
        """Switch every layer, wrapper and nested layer to training (or inference) behaviour."""
        for obj in self._modules():
            obj.training = bool(mode)
        return self

    def eval(self) -> Sequential:
        """Switch every layer to inference behaviour (same as ``train(False)``)."""
        return self.train(False)

    @property
    def training(self) -> bool:
        """Whether the first layer is in training mode (:meth:`train` sets them all alike)."""
        return bool(self.layers[0].training)

    def _modules(self) -> list[Any]:
        """Every layer and wrapper, and the layers they hold, each once."""
        seen: dict[int, Any] = {}
        stack: list[Any] = list(self.layers)
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen[id(obj)] = obj
            inner = vars(obj).values()
            stack.extend(v for v in inner if isinstance(v, LayerBase | WrapperBase))
            for value in inner:
                if isinstance(value, list | tuple):
                    stack.extend(v for v in value if isinstance(v, LayerBase | WrapperBase))
        return list(seen.values())

    def summary(self) -> dict[str, Any]:
        """``{"model", "loss", "backend", "dtype", "layers"}`` with one :meth:`LayerBase.summary`
        per layer (parameters as NumPy host copies)."""
        return {
            "model": type(self).__name__,
            "loss": None if self.loss is None else str(self.loss),
            "backend": self.backend.name,
            "dtype": self.backend.dtype_name,
            "layers": [layer.summary() for layer in self.layers],
        }

    def set_params(self, summary: Mapping[str, Any]) -> Sequential:
        """Load parameters and hyperparameters from a :meth:`summary`; return the model.

        Raises
        ------
        TypeError
            If ``summary`` is not a dict or its ``"layers"`` not a list.
        ValueError
            If the summary describes a different number of layers (or a layer rejects its entry).
        """
        if not isinstance(summary, Mapping) or not isinstance(summary.get("layers", []),
                                                               list | tuple):
            msg = (f"Sequential.set_params: expected a dict with a list of 'layers' such as "
                   f"summary() returns, got {type(summary).__name__}")
            raise TypeError(msg)
        entries = list(summary.get("layers", []))
        if len(entries) != len(self.layers):
            msg = (f"Sequential.set_params: the summary has {len(entries)} layers, the model "
                   f"{len(self.layers)}")
            raise ValueError(msg)
        for layer, entry in zip(self.layers, entries, strict=True):
            layer.set_params(entry)
        if "loss" in summary:
            self.set_loss(summary["loss"])
        return self

    def to(self, backend: str | Backend) -> Sequential:
        """Move every layer (parameters, gradients, optimizer state) to ``backend``; return self."""
        new = resolve_backend(backend)
        for layer in self.layers:
            layer.to(new)
        self.backend = new
        return self

    def count_params(self) -> int:
        """The number of values in all parameters (trainable or not)."""
        return sum(int(np.prod(p.shape)) for layer in self.layers for p in layer.parameters.values())

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | PathLike[str]) -> None:
        """Write a checkpoint (see :func:`anyml.checkpoint.save`)."""
        from anyml.checkpoint import save

        save(self, path)

    @classmethod
    def load(cls, path: str | PathLike[str], *, backend: str | Backend | None = None) -> Sequential:
        """Read a checkpoint written by :meth:`save` (see :func:`anyml.checkpoint.load`)."""
        from anyml.checkpoint import load

        model = load(path, backend=backend)
        if not isinstance(model, cls):
            msg = f"Sequential.load: {path} holds a {type(model).__name__}, not a Sequential"
            raise ValueError(msg)
        return model

    # ------------------------------------------------------------------ training
    @activated
    def train_on_batch(self, X: Any, y: Any, *, cur_loss: bool = False) -> Array:
        """One step of gradient descent on a minibatch; returns its loss (a 0-d array).

        ``X`` and ``y`` may be host arrays (they are converted) or arrays of the backend; they are
        checked as in :meth:`fit` before the step (for arrays of the backend, the NaN and label
        checks read one value back from the device). With ``cur_loss=True`` the loss value is
        handed to the optimizers (a ``KingScheduler`` needs it; it costs a device synchronization).
        """
        loss = self._need_loss("train_on_batch")
        data = self._data(X, y, "train_on_batch")
        Xb, yb = data.batch(None, 0, data.n)
        out = self._train_forward(Xb)
        data.check_labels(out, "train_on_batch")
        value = loss.loss(yb, out, **self._checked)
        self._train_backward(loss.grad(yb, out, **self._checked))
        self.update(float(value) if cur_loss else None)
        return value

    @property
    def _checked(self) -> dict[str, bool]:
        """Keywords for the loss: the labels were checked where they entered (:class:`Data`)."""
        return {"check_labels": False} if isinstance(self.loss, CrossEntropy) else {}

    def _data(self, X: Any, y: Any, owner: str) -> Data:
        """The entry point of data: checked and converted as :class:`~anyml._training.Data` says."""
        from anyml.layers.embedding import Embedding

        first = self.layers[0]
        while isinstance(first, WrapperBase):
            first = first.base_layer
        return Data(self.backend, X, y, owner, float_inputs=not isinstance(first, Embedding),
                    int_labels=isinstance(self.loss, CrossEntropy))

    def _train_forward(self, X: Array) -> Array:
        last = len(self.layers) - 1
        fused = self._fused_softmax
        for i, layer in enumerate(self.layers):
            X = layer.forward(X, retain_derived=not (fused and i == last))
        return X

    def _train_backward(self, dz: Array) -> Array:
        layers = self.layers[:-1] if self._fused_softmax else self.layers
        for layer in reversed(layers):
            dz = layer.backward(dz)
        return dz

    def _loss_needs_value(self) -> bool:
        from anyml.schedulers import KingScheduler

        return any(isinstance(getattr(layer.optimizer, "lr_scheduler", None), KingScheduler)
                   for layer in self.layers)

    @activated
    def fit(self, X: Any, y: Any, *, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
            validation_data: tuple[Any, Any] | None = None, verbose: bool = True,
            callbacks: Sequence[Callback] = (), accumulate: int = 1, comm: Any = None,
            deterministic: bool = False, checkpoint: str | PathLike[str] | None = None,
            checkpoint_every: int | None = None, resume: bool = True) -> dict[str, list[float]]:
        """Train on ``(X, y)`` in minibatches for ``epochs`` passes; return the history.

        Parameters
        ----------
        X : array of shape (n_ex, ...)
            Inputs, host (NumPy) arrays or arrays of the model's backend.
        y : array of shape (n_ex, ...)
            Targets: like the output for ``SquaredError``; class indices (integers) or one-hot rows
            for ``CrossEntropy``.
        epochs : int
            Passes over the data.
        batch_size : int
            Examples per step. The last batch of an epoch may be smaller, but never holds a single
            example: when ``n_ex % batch_size == 1`` that example joins the batch before it (which
            then holds ``batch_size + 1``), since a batch of one has no batch statistics.
        shuffle : bool
            Draw a new random order each epoch from ``backend.host_rng`` (else keep the data's order).
        validation_data : (X_val, y_val), optional
            Evaluated (in inference mode) after each epoch.
        verbose : bool
            Show a progress bar with the running loss and the throughput in examples/s (tqdm, if
            installed; else one line per epoch).
        callbacks : sequence of callables
            Each is called as ``callback(epoch, logs)`` after every epoch, with ``logs`` that epoch's
            metrics; set ``model.stop_training = True`` to stop early.
        accumulate : int
            Minibatches whose gradients are added up before one update (gradient accumulation): the
            update sees the gradient of all their examples together (for a mean loss, the mean over
            all of them). Default 1.
        comm : Communicator, optional
            Train data-parallel on the ranks of ``comm`` (default: the current communicator,
            :func:`anyml.distributed.get_comm`, a single process unless
            :func:`anyml.distributed.init` or a thread group set one). ``batch_size`` is then the
            global batch; every rank must call ``fit`` with the same data and arguments. See
            :mod:`anyml.distributed.training`.
        deterministic : bool
            Under a communicator of several ranks, draw per-example noise (dropout masks) for the
            whole global batch on every rank and keep this rank's rows, so that training is
            bit-identical to one process (see :mod:`anyml.distributed.noise`).
        checkpoint : str or path-like, optional
            Save the model and the training position there after every epoch (and every
            ``checkpoint_every`` global batches); with ``resume`` (the default), a run that finds
            the file continues from it, on any number of processes, with the same batches and
            randomness as an uninterrupted run (``epochs`` counts all epochs, the resumed ones too).
            See :mod:`anyml.distributed.resume`.

        Returns
        -------
        dict of lists
            Per epoch: ``"loss"`` (and ``"accuracy"`` for cross-entropy), then ``"val_loss"`` (and
            ``"val_accuracy"``) with validation data.
        """
        from anyml.distributed import get_comm, guarded

        loss = self._need_loss("fit")
        _check_positive("fit", epochs=epochs, batch_size=batch_size, accumulate=accumulate)
        if checkpoint_every is not None:
            _check_positive("fit", checkpoint_every=checkpoint_every)
        if validation_data is not None and (not isinstance(validation_data, tuple | list)
                                            or len(validation_data) != 2):
            got = (f"a {type(validation_data).__name__} of {len(validation_data)}"
                   if isinstance(validation_data, tuple | list) else type(validation_data).__name__)
            msg = f"Sequential.fit: validation_data must be a pair (X_val, y_val), got {got}"
            raise ValueError(msg)
        comm = get_comm() if comm is None else comm
        with guarded(comm):  # data may differ between ranks: a rank that refuses it ends the job
            data = self._data(X, y, "fit")
            if validation_data is not None:  # checked now, not after the first epoch
                val = self._data(*validation_data, "fit")
                if isinstance(self.loss, CrossEntropy):  # the labels against the output's classes
                    Xv, _ = val.batch(None, 0, 1)
                    with self._inference():
                        val.check_labels(self.forward(Xv, retain_derived=False), "fit")
            return self._fit(loss, data, comm, epochs=epochs,
                             batch_size=batch_size, shuffle=shuffle, accumulate=accumulate,
                             validation_data=validation_data, verbose=verbose,
                             callbacks=callbacks, deterministic=deterministic,
                             checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                             resume=resume)

    def _fit(self, loss: Loss, data: Data, comm: Any, *, epochs: int, batch_size: int,
             shuffle: bool, accumulate: int, validation_data: tuple[Any, Any] | None,
             verbose: bool, callbacks: Sequence[Callback], deterministic: bool,
             checkpoint: Any = None, checkpoint_every: int | None = None,
             resume: bool = True) -> dict[str, list[float]]:
        from anyml.distributed.resume import Checkpointer
        from anyml.distributed.training import DataParallel

        parallel = DataParallel(self, comm, deterministic=deterministic)
        pass_loss = self._loss_needs_value()
        history: dict[str, list[float]] = {}
        self.stop_training = False
        window_size = batch_size * accumulate
        saver = None if checkpoint is None else Checkpointer(
            self, comm, checkpoint, checkpoint_every, batch_size=batch_size, accumulate=accumulate,
            n=data.n)
        position = saver.restore(history) if saver is not None and resume else None
        parallel.sync_random_state()  # before the first epoch's order: the same on every rank
        for epoch in range(position.epoch if position else 0, epochs):
            self.train()
            skip = position.step if position and epoch == position.epoch else 0
            if saver is not None and not skip:
                saver.epoch_begins()
            if skip and saver is not None and position is not None:
                saver.epoch_start_state = position.host_rng_epoch_start
                order = saver.draw_order(position, data.n) if shuffle else None
            else:
                order = self.backend.host_rng.permutation(data.n) if shuffle else None
            bar = Progress(verbose and comm.rank == 0, data.n, f"epoch {epoch + 1}/{epochs}")
            totals = Totals()
            seen = 0
            for step, (start, size) in enumerate(batch_starts(data.n, batch_size)):
                if step < skip:
                    continue
                stop = start + size
                first = start - start % window_size
                window_end = min(first + window_size, data.n)
                if data.n - window_end == 1:  # the example that joined the last batch
                    window_end = data.n
                window = window_end - first
                last = stop == window_end
                loss_sum, correct, n_local, _ = parallel.step(data, order, start, stop, window, last,
                                                              loss)
                if last:
                    cur = parallel.global_loss(loss_sum, window) if pass_loss else None
                    self.update(cur)
                    if (saver is not None and checkpoint_every and stop < data.n
                            and (step + 1) % checkpoint_every < accumulate):
                        saver.save(epoch, step + 1, history)
                totals.add(loss_sum, correct, n_local)
                seen += stop - start
                bar.step(stop - start, totals)
            self.check_finite()  # once an epoch at least, besides every CHECK_EVERY updates
            logs = parallel.reduce_totals(totals, seen).logs()
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size, comm=comm)
                logs.update({f"val_{k}": v for k, v in val.items()})
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            bar.close(logs)
            if saver is not None:
                saver.save(epoch + 1, 0, history)
            for callback in callbacks:
                callback(epoch, logs)
            if self.stop_training:
                break
        return history

    @activated
    def evaluate(self, X: Any, y: Any, batch_size: int | None = None, *,
                 comm: Any = None) -> dict[str, float]:
        """The mean loss per example (and accuracy for cross-entropy), in inference mode.

        Under a communicator of several ranks (``comm``, default the current one) each rank
        evaluates a contiguous share of the examples and the sums are added up: every rank returns
        the same result.

        Returns
        -------
        dict
            ``{"loss": float}`` plus ``"accuracy"`` for a cross-entropy loss.
        """
        from anyml.distributed import get_comm, guarded
        from anyml.distributed.training import reduce_totals, shard

        loss = self._need_loss("evaluate")
        data = self._data(X, y, "evaluate")
        step = data.n if batch_size is None else batch_size
        _check_positive("evaluate", batch_size=step)
        comm = get_comm() if comm is None else comm
        lo, hi = shard(data.n, comm.rank, comm.size)
        totals = Totals()
        with guarded(comm), self._inference():
            for start in range(lo, hi, step):
                Xb, yb = data.batch(None, start, min(step, hi - start))
                out = self.forward(Xb, retain_derived=False)
                data.check_labels(out, "evaluate")
                totals.add(self._per_example_sum(loss.loss(yb, out, **self._checked), out),
                           self._correct(yb, out),
                           int(Xb.shape[0]))
            totals = reduce_totals(self.backend, comm, totals, data.n)
        return totals.logs()

    @activated
    def predict(self, X: Any, batch_size: int | None = None, *, comm: Any = None) -> Array:
        """The model output for ``X`` in inference mode, an array of the model's backend.

        With ``CrossEntropy(from_logits=True)`` the output is the scores; see the class Notes. Under
        a communicator of several ranks each rank computes a contiguous share and every rank
        returns the whole output.
        """
        from anyml.distributed import get_comm, guarded
        from anyml.distributed.training import gather_rows, shard

        data = self._data(X, None, "predict")
        step = data.n if batch_size is None else batch_size
        _check_positive("predict", batch_size=step)
        comm = get_comm() if comm is None else comm
        lo, hi = shard(data.n, comm.rank, comm.size)
        outs = []
        with guarded(comm), self._inference():
            for start in range(lo, hi, step):
                Xb, _ = data.batch(None, start, min(step, hi - start))
                outs.append(self.forward(Xb, retain_derived=False))
            if comm.size > 1:
                return gather_rows(self.backend, comm, outs, data.n, lo)
        return outs[0] if len(outs) == 1 else self.backend.xp.concat(outs, axis=0)

    def sync_batchnorm(self, sync: bool = True) -> Sequential:
        """Switch every batch normalization layer to statistics of the global batch across the ranks
        of the current communicator (``sync=True``) or of each rank's share; return the model."""
        from anyml.layers.norm import BatchNorm1D, BatchNorm2D

        for obj in self._modules():
            if isinstance(obj, BatchNorm1D | BatchNorm2D):
                obj.sync = bool(sync)
        return self

    # ------------------------------------------------------------------ helpers
    def _inference(self) -> Inference:
        return Inference(self._modules())

    def _per_example_sum(self, value: Array, out: Array) -> Array:
        """The batch's loss summed over its examples."""
        if self.loss is not None and self.loss.reduction == "mean":
            return value * int(out.shape[0])
        return value

    def _correct(self, y: Array, out: Array) -> Array | None:
        """How many argmax predictions hit the class, for cross-entropy; else None."""
        if not isinstance(self.loss, CrossEntropy):
            return None
        xp = self.backend.xp
        pred = xp.argmax(out, axis=-1)
        labels = y if xp.isdtype(y.dtype, "integral") else xp.argmax(y, axis=-1)
        hits = xp.sum(xp.astype(pred == labels, out.dtype))
        per_example = int(np.prod(pred.shape[1:]))  # predictions per example (e.g. time steps)
        return hits if per_example == 1 else hits / per_example


def _same_backend(a: Backend, b: Backend) -> bool:
    return a is b or (a.name == b.name and a.device == b.device and a.dtype == b.dtype)


def _check_positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            msg = f"Sequential.{owner}: {name} must be a positive integer, got {value!r}"
            raise ValueError(msg)
