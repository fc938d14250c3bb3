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
from anyml._threads import training_threads
from anyml._training import (
    Batches,
    Data,
    Inference,
    InterruptGuard,
    Progress,
    Totals,
    batch_starts,
    check_host_labels,
)
from anyml._validate import real
from anyml.backend import Array, Backend, activated, resolve_backend
from anyml.callbacks import Callback, as_callback
from anyml.checkpoint import load as load_checkpoint
from anyml.checkpoint import register_model
from anyml.checkpoint import save as save_checkpoint
from anyml.layers.base import LayerBase, all_true
from anyml.layers.softmax import Softmax
from anyml.losses import CrossEntropy, Loss, SquaredError, get_loss
from anyml.metrics import Metric, get_metric
from anyml.optimizers import GroupedStep, Optimizer, get_optimizer
from anyml.wrappers import WrapperBase

__all__ = ["Sequential"]


Layer = LayerBase | WrapperBase
CallbackLike = Callback | Callable[[int, dict[str, float]], Any]

#: The optimizer of every trainable layer built without one, unless ``Sequential(optimizer=...)``
#: says otherwise.
DEFAULT_OPTIMIZER = "Adam()"


@register_model
class Sequential:
    r"""Layers applied one after the other, :math:`y = f_n(\cdots f_2(f_1(X)))`, with a loss.

    Parameters
    ----------
    layers : sequence of layers
        Layers or wrapped layers (:class:`~anyml.wrappers.Dropout`), applied in order.
    loss : str, dict, Loss or None
        :class:`~anyml.losses.SquaredError` or :class:`~anyml.losses.CrossEntropy` (or a spec
        string such as ``"CrossEntropy(from_logits=True)"``, or an alias: ``"mse"``,
        ``"cross_entropy"``). ``None`` makes a model that can only :meth:`predict`.
    optimizer : str, dict or Optimizer
        The model-wide optimizer: every trainable layer built without an ``optimizer=`` of its own
        gets a copy (its own state). Default ``"Adam()"`` (lr 0.001). A layer given its own optimizer,
        or loaded from a checkpoint, keeps it. (A layer used on its own, outside a model, still
        defaults to ``SGD()`` as in numpy-ml.)
    metrics : sequence of str or Metric, optional
        Reported next to the loss by :meth:`fit` and :meth:`evaluate` (see :mod:`anyml.metrics`:
        ``"accuracy"``, ``"top_k_accuracy"``, ``"mae"``, ``"mse"`` ...). Default: ``["accuracy"]``
        for a cross-entropy loss, none otherwise.
    clip_norm : float, optional
        Clip the gradients of the whole model by their global norm before each update: every
        gradient is scaled by :math:`\min(1, c / \lVert g \rVert_2)`, where
        :math:`\lVert g \rVert_2` is the norm of all trainable gradients of all layers taken
        together (``torch.nn.utils.clip_grad_norm_``). Computed on the device. Default None.
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
                 optimizer: Any = DEFAULT_OPTIMIZER, metrics: Sequence[Any] | None = None,
                 clip_norm: float | None = None, backend: str | Backend | None = None) -> None:
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
        self.optimizer: Optimizer = get_optimizer(optimizer)
        self.set_optimizer(optimizer)
        self._metrics_spec = None if metrics is None else list(metrics)
        self.metrics: list[Metric] = self._build_metrics(self._metrics_spec)
        self.clip_norm = None if clip_norm is None else real(
            "Sequential", "clip_norm", clip_norm, low=0.0, low_open=True)
        #: Whether the last :meth:`fit` was stopped by Ctrl-C.
        self.interrupted = False
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
        if hasattr(self, "metrics"):
            self.metrics = self._build_metrics(self._metrics_spec)

    def set_optimizer(self, optimizer: Any) -> None:
        """Give a copy of ``optimizer`` to every trainable layer that has no optimizer of its own.

        Layers given one at construction (``optimizer=...``) or by ``set_params``/a checkpoint keep
        theirs; layers that took the model's earlier optimizer take the new one.
        """
        self.optimizer = get_optimizer(optimizer)
        for layer in self._modules():
            if (isinstance(layer, LayerBase) and layer._trainable_names
                    and not layer._optimizer_given):
                layer.optimizer = self.optimizer.copy()

    def _optimizers(self) -> list[Optimizer]:
        """The optimizer of every layer that has trainable parameters, each once."""
        seen: dict[int, Optimizer] = {}
        for layer in self._modules():
            if isinstance(layer, LayerBase) and layer._trainable_names:
                seen.setdefault(id(layer.optimizer), layer.optimizer)
        return list(seen.values())

    def _build_metrics(self, spec: list[Any] | None) -> list[Metric]:
        if spec is None:
            return [get_metric("accuracy")] if isinstance(self.loss, CrossEntropy) else []
        metrics = [get_metric(m) for m in spec]
        names = [m.name for m in metrics]
        if len(set(names)) != len(names) or "loss" in names:
            msg = f"Sequential: the metrics must have distinct names other than 'loss', got {names}"
            raise ValueError(msg)
        return metrics

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
        return f"Sequential([\n{inner},\n], loss={self.loss}, optimizer={self.optimizer})"

    def __str__(self) -> str:
        return self.describe()

    def describe(self, input_shape: Sequence[int] | None = None) -> str:
        """A readable table of the model: each layer, its output shape and parameter count.

        Parameters
        ----------
        input_shape : sequence of int, optional
            The shape of one example (without the batch axis). When given, one example of zeros is
            passed through the model in inference mode to find every output shape (this builds
            layers whose sizes are inferred from their input). Otherwise the shapes of the last
            forward pass are shown, or ``?`` before the first.

        Returns
        -------
        str
            Also what ``str(model)`` and ``print(model)`` show. :meth:`summary` stays the
            ``set_params`` dict.
        """
        from anyml._describe import describe

        return describe(self, input_shape)

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
        if self.clip_norm is not None:
            self._clip_global_norm(self.clip_norm)
        grouped, parts = self._grouped_update(cur_loss)
        for layer in self.layers:
            if id(layer) in grouped:
                continue
            if type(layer).update is LayerBase.update and not layer.gradients:
                layer._caches.clear()  # nothing to update: what flush_gradients does
                continue
            layer.update(cur_loss, check_finite=False)
            parts += layer._finite_parts()
        ok = all_true(self.backend.xp, parts)  # one flag for all parameters: stack, then all
        if ok is None:
            return
        watch = self.__dict__.setdefault("_finite_watch", FiniteWatch())
        watch.record(ok, self.backend.xp)
        if check_finite or (check_finite is None and watch.due()):
            self.check_finite()

    def _grouped_update(self, cur_loss: float | None) -> tuple[set[int], list[Array]]:
        """Update the layers that use the plain :meth:`LayerBase.update` with one
        :class:`~anyml.optimizers.GroupedStep` (the parameters of all optimizers sharing one
        configuration updated by one set of kernels; same result as layer by layer). Returns the
        ids of the layers done (parameters updated, optimizer stepped, gradients flushed) and
        their finiteness parts (0-d boolean arrays, as ``_finite_parts`` of each: one per flat
        group rather than one per parameter, plus each layer's ``_extra_finite_parts``)."""
        layers: list[LayerBase] = []
        seen: dict[int, int] = {}  # an optimizer shared by several layers keeps their order
        for layer in self.layers:
            opt = getattr(layer, "optimizer", None)
            seen[id(opt)] = seen.get(id(opt), 0) + 1
            if (isinstance(layer, LayerBase) and type(layer).update is LayerBase.update
                    and layer.trainable and layer.gradients
                    and layer.optimizer._group_config() is not None):
                layers.append(layer)
        layers = [layer for layer in layers if seen[id(layer.optimizer)] == 1]
        if len(layers) < 2:
            return set(), []
        step = self.__dict__.setdefault("_grouped_step", GroupedStep())
        # flush=True: each group's gradients become views of one flat zero array, which the next
        # step takes as its flat gradient (no concatenation), as flush_gradients would otherwise
        updated = step.apply([(layer.optimizer, layer.parameters, layer.gradients)
                              for layer in layers], cur_loss, flush=True)
        for layer in layers:
            layer._caches.clear()
        xp = self.backend.xp
        parts = [xp.all(xp.isfinite(values)) for values in updated]
        for layer in layers:
            parts += layer._extra_finite_parts()
        return {id(layer) for layer in layers}, parts

    def _clip_global_norm(self, max_norm: float) -> Array:
        r"""Scale every trainable gradient by :math:`\min(1, c / \lVert g \rVert_2)` with the norm of
        all of them together; returns that norm (a 0-d array, no device synchronization)."""
        xp = self.backend.xp
        grads: list[dict[str, Array]] = []
        seen: set[int] = set()
        for layer in self._modules():
            if (isinstance(layer, LayerBase) and layer.trainable and layer.gradients
                    and id(layer.gradients) not in seen):
                seen.add(id(layer.gradients))
                grads.append(layer.gradients)
        if not grads:
            return xp.asarray(0.0, dtype=self.backend.dtype, device=self.backend.device)
        total = None
        for g in grads:
            for value in g.values():
                sq = xp.sum(value * value)
                total = sq if total is None else total + sq
        norm = xp.sqrt(total)
        scale = max_norm / xp.maximum(norm, max_norm)  # c / max(norm, c), never divides by zero
        for g in grads:
            for name in g:
                g[name] = g[name] * scale
        return norm

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

    def count_params(self, trainable_only: bool = False) -> int:
        """The number of values in all parameters (or only the trainable ones, of unfrozen layers).

        Layers whose sizes are inferred from their first input count 0 until they are built.
        """
        total = 0
        for layer in self.layers:
            if trainable_only and not layer.trainable:
                continue
            names = _innermost(layer)._trainable_names if trainable_only else layer.parameters
            total += sum(int(np.prod(layer.parameters[n].shape)) for n in names
                         if n in layer.parameters)
        return total

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | PathLike[str]) -> None:
        """Write a checkpoint (see :func:`anyml.checkpoint.save`)."""
        save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str | PathLike[str], *, backend: str | Backend | None = None) -> Sequential:
        """Read a checkpoint written by :meth:`save` (see :func:`anyml.checkpoint.load`)."""
        model = load_checkpoint(path, backend=backend)
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
        value, grad = loss.loss_and_grad(yb, out, **self._checked)
        self._train_backward(grad)
        self.update(float(value) if cur_loss else None)
        return value

    @property
    def _checked(self) -> dict[str, bool]:
        """Keywords for the loss: the labels were checked where they entered (:class:`Data`)."""
        return {"check_labels": False} if isinstance(self.loss, CrossEntropy) else {}

    def _data(self, X: Any, y: Any, owner: str, preload: bool | None = False) -> Data:
        """The entry point of data: checked and converted as :class:`~anyml._training.Data` says."""
        from anyml.layers.embedding import Embedding

        first = self.layers[0]
        while isinstance(first, WrapperBase):
            first = first.base_layer
        return Data(self.backend, X, y, owner, float_inputs=not isinstance(first, Embedding),
                    int_labels=isinstance(self.loss, CrossEntropy), preload=preload)

    def _train_forward(self, X: Array) -> Array:
        last = len(self.layers) - 1
        fused = self._fused_softmax
        shapes = []
        for i, layer in enumerate(self.layers):
            X = layer.forward(X, retain_derived=not (fused and i == last))
            shapes.append(tuple(X.shape))
        self._last_shapes = shapes  # for describe()
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
    def fit(self, X: Any, y: Any = None, *, epochs: int = 1, batch_size: int = 32,
            shuffle: bool = True, validation_data: Any = None, validation_split: float = 0.0,
            steps_per_epoch: int | None = None, verbose: bool = True,
            callbacks: Sequence[CallbackLike] = (), accumulate: int = 1, comm: Any = None,
            deterministic: bool = False, checkpoint: str | PathLike[str] | None = None,
            checkpoint_every: int | None = None, resume: bool = True,
            preload: bool | None = None) -> dict[str, list[float]]:
        """Train on ``(X, y)`` in minibatches for ``epochs`` passes; return the history.

        Parameters
        ----------
        X : array of shape (n_ex, ...), or an iterable of (X, y) minibatches
            Inputs, host (NumPy, memory-mapped included) arrays or arrays of the model's backend.
            Or, with ``y`` left out, anything that yields ``(X_batch, y_batch)`` pairs: a list, a
            generator, a data loader, or a function returning a new iterator each epoch. A source
            that can start over (a list, a loader, a function) is read from the start every epoch;
            a generator object is read on from where the previous epoch stopped.
        y : array of shape (n_ex, ...), optional
            Targets: like the output for ``SquaredError``; class indices (integers) or one-hot rows
            for ``CrossEntropy``. Left out when ``X`` yields minibatches.
        epochs : int
            Passes over the data.
        batch_size : int
            Examples per step. The last batch of an epoch may be smaller, but never holds a single
            example: when ``n_ex % batch_size == 1`` that example joins the batch before it (which
            then holds ``batch_size + 1``), since a batch of one has no batch statistics.
            Arrays only.
        shuffle : bool
            Draw a new random order each epoch from ``backend.host_rng`` (else keep the data's order);
            arrays only (an iterable is read in its own order).
        validation_data : (X_val, y_val) or iterable of minibatches, optional
            Evaluated (in inference mode) after each epoch.
        validation_split : float in [0, 1)
            Hold out this fraction of the examples, **the last ones** (before any shuffling), as
            validation data. Arrays only; not together with ``validation_data``.
        steps_per_epoch : int, optional
            With an iterable: the most minibatches per epoch (needed to split an endless generator
            into epochs).
        verbose : bool
            On a terminal, a short progress bar (examples, examples/s, running loss) during each
            epoch; then one line with the epoch's metrics. To a file or pipe, only the lines.
        callbacks : sequence of Callback or callables
            :mod:`anyml.callbacks` objects, or functions ``f(epoch, logs)`` called after every
            epoch; set ``model.stop_training = True`` to stop after the current epoch.
        accumulate : int
            Minibatches whose gradients are added up before one update (gradient accumulation): the
            update sees the gradient of all their examples together (for a mean loss, the mean over
            all of them). Default 1. Arrays only.
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
        preload : bool, optional
            Copy the arrays ``X`` and ``y`` (and ``validation_data``), converted to the dtypes they
            are computed in, to the backend's device once, and gather each minibatch there: an
            epoch then copies only its order of examples to the device. Default (``None``): when
            they fit the backend's budget (:meth:`Backend.resident_bytes
            <anyml.backend.Backend.resident_bytes>`: a quarter of a GPU's free memory, 512 MB for
            torch on the CPU, 0 for NumPy and array-api-strict, whose arrays are host memory).
            Otherwise each minibatch is copied when it is needed, from pinned memory and one step
            ahead where the backend copies asynchronously (CuPy, torch CUDA). Results are the same
            either way.

        Returns
        -------
        dict of lists
            Per epoch: ``"loss"`` and each metric (``"accuracy"`` by default for cross-entropy),
            then ``"val_loss"`` and ``"val_<metric>"`` with validation data.

        Notes
        -----
        **Ctrl-C** (SIGINT, in the main thread) stops training after the current step: the epoch's
        metrics so far are logged (without validation), the callbacks' ``on_train_end`` run, and the
        history is returned, with :attr:`interrupted` set. A second Ctrl-C interrupts at once.
        """
        from anyml.distributed import get_comm, guarded

        loss = self._need_loss("fit")
        _check_positive("fit", epochs=epochs, batch_size=batch_size, accumulate=accumulate)
        if steps_per_epoch is not None:
            _check_positive("fit", steps_per_epoch=steps_per_epoch)
        if checkpoint_every is not None:
            _check_positive("fit", checkpoint_every=checkpoint_every)
        stream = y is None and not hasattr(X, "shape")
        if y is None and not stream:
            msg = "Sequential.fit: expected targets y with the inputs X (or an iterable of (X, y) pairs)"
            raise ValueError(msg)
        if stream and (accumulate != 1 or checkpoint is not None):
            msg = ("Sequential.fit: accumulate and checkpoint need arrays X and y, not an iterable of "
                   "minibatches")
            raise ValueError(msg)
        if validation_split:
            if stream or validation_data is not None:
                msg = ("Sequential.fit: validation_split needs arrays X and y and no validation_data"
                       if not stream else
                       "Sequential.fit: validation_split needs arrays X and y, not an iterable")
                raise ValueError(msg)
            X, y, validation_data = _split(X, y, validation_split)
        _check_validation_data(validation_data)
        comm = get_comm() if comm is None else comm
        with guarded(comm), training_threads():  # a rank that refuses its data ends the job
            source: Data | Batches = (Batches(self.backend, X, steps_per_epoch, "fit") if stream
                                      else self._data(X, y, "fit", preload))
            if (isinstance(validation_data, tuple | list) and len(validation_data) == 2
                    and hasattr(validation_data[0], "shape")):  # checked now, not after an epoch
                val = self._data(validation_data[0], validation_data[1], "fit", preload)
                if isinstance(self.loss, CrossEntropy):  # the labels against the output's classes
                    Xv, _ = val.one(0, 1)
                    with self._inference():
                        val.check_labels(self.forward(Xv, retain_derived=False), "fit")
                validation_data = val  # evaluated after each epoch without being checked again
            return self._fit(loss, source, comm, epochs=epochs, batch_size=batch_size,
                             shuffle=shuffle, accumulate=accumulate,
                             validation_data=validation_data, verbose=verbose,
                             callbacks=[as_callback(c) for c in callbacks],
                             deterministic=deterministic, checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, resume=resume)

    def _fit(self, loss: Loss, source: Data | Batches, comm: Any, *, epochs: int, batch_size: int,
             shuffle: bool, accumulate: int, validation_data: Any, verbose: bool,
             callbacks: list[Callback], deterministic: bool, checkpoint: Any = None,
             checkpoint_every: int | None = None, resume: bool = True) -> dict[str, list[float]]:
        from anyml.distributed.resume import Checkpointer
        from anyml.distributed.training import DataParallel

        parallel = DataParallel(self, comm, deterministic=deterministic)
        pass_loss = self._loss_needs_value()
        history: dict[str, list[float]] = {}
        self.stop_training = self.interrupted = False
        logs: dict[str, float] | None = None
        n = source.n if isinstance(source, Data) else 0
        saver = None if checkpoint is None else Checkpointer(
            self, comm, checkpoint, checkpoint_every, batch_size=batch_size, accumulate=accumulate,
            n=n)
        position = saver.restore(history) if saver is not None and resume else None
        parallel.sync_random_state()  # before the first epoch's order: the same on every rank
        for cb in callbacks:
            cb.set_model(self)
        for cb in callbacks:
            cb.on_train_begin(None)
        with InterruptGuard() as guard:
            for epoch in range(position.epoch if position else 0, epochs):
                self.train()
                skip = position.step if position and epoch == position.epoch else 0
                order = None
                if isinstance(source, Data):
                    if saver is not None and not skip:
                        saver.epoch_begins()
                    if skip and saver is not None and position is not None:
                        saver.epoch_start_state = position.host_rng_epoch_start
                        order = saver.draw_order(position, n) if shuffle else None
                    else:
                        order = self.backend.host_rng.permutation(n) if shuffle else None
                total = n if isinstance(source, Data) else None
                bar = Progress(verbose and comm.rank == 0, total, f"epoch {epoch + 1}/{epochs}")
                totals = Totals()
                for step, (data, start, stop, window, last) in enumerate(
                        self._steps(source, batch_size, accumulate)):
                    if step < skip:
                        continue
                    loss_sum, metric_sums, n_local, _ = parallel.step(
                        data, order if data is source else None, start, stop, window, last, loss)
                    if last:
                        cur = parallel.global_loss(loss_sum, window) if pass_loss else None
                        self.update(cur)
                        if (saver is not None and checkpoint_every and stop < n
                                and (step + 1) % checkpoint_every < accumulate):
                            saver.save(epoch, step + 1, history)
                    totals.add(loss_sum, metric_sums, n_local)
                    bar.step(stop - start, totals)
                    if guard.requested and last:
                        break
                self.interrupted = guard.requested
                n_seen = bar.seen
                if n_seen == 0:
                    bar.close({}, "interrupted")
                    break
                self.check_finite()  # once an epoch at least, besides every CHECK_EVERY updates
                logs = parallel.reduce_totals(totals, n_seen).logs()
                if validation_data is not None and not self.interrupted:
                    val = self._evaluate_any(validation_data, batch_size, comm)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                for key, value in logs.items():
                    history.setdefault(key, []).append(value)
                bar.close(logs, "interrupted" if self.interrupted else "")
                if self.interrupted:
                    break
                if saver is not None:
                    saver.save(epoch + 1, 0, history)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        for cb in callbacks:
            cb.on_train_end(logs)
        return history

    def _steps(self, source: Data | Batches, batch_size: int,
               accumulate: int) -> Iterator[tuple[Data, int, int, int, bool]]:
        """One epoch of steps ``(data, start, stop, window, last)`` for
        :meth:`~anyml.distributed.training.DataParallel.step`: the global batch ``[start, stop)``
        of ``data``, the examples of its accumulation window, and whether it ends it."""
        if isinstance(source, Batches):
            for Xb, yb, _ in source.epoch():
                n = int(Xb.shape[0])
                yield self._data(Xb, yb, "fit"), 0, n, n, True
            return
        window_size = batch_size * accumulate
        for start, size in batch_starts(source.n, batch_size):
            stop = start + size
            first = start - start % window_size
            window_end = min(first + window_size, source.n)
            if source.n - window_end == 1:  # the example that joined the last batch
                window_end = source.n
            window = window_end - first
            last = stop == window_end
            yield source, start, stop, window, last

    def _evaluate_any(self, data: Any, batch_size: int | None, comm: Any) -> dict[str, float]:
        if isinstance(data, Data):
            return self._evaluate_data(data, batch_size, comm)
        if isinstance(data, tuple | list) and len(data) == 2 and hasattr(data[0], "shape"):
            return self.evaluate(data[0], data[1], batch_size=batch_size, comm=comm)
        return self.evaluate(data, batch_size=batch_size, comm=comm)

    @activated
    def evaluate(self, X: Any, y: Any = None, batch_size: int | None = None, *,
                 comm: Any = None) -> dict[str, float]:
        """The mean loss per example and the metrics, in inference mode.

        ``X`` and ``y`` are arrays (evaluated in batches of ``batch_size``, default all at once), or
        ``X`` is an iterable of ``(X, y)`` minibatches (one pass, in this process) and ``y`` is left
        out.

        Under a communicator of several ranks (``comm``, default the current one) each rank
        evaluates a contiguous share of the examples and the sums are added up: every rank returns
        the same result.

        Returns
        -------
        dict
            ``{"loss": float}`` plus one entry per metric (``"accuracy"`` by default for a
            cross-entropy loss).
        """
        loss = self._need_loss("evaluate")
        totals = Totals()
        if y is None and not hasattr(X, "shape"):
            stream = Batches(self.backend, X, None, "evaluate")
            with self._inference():
                for Xb, yb, host_y in stream.epoch():
                    out = self.forward(Xb, retain_derived=False)
                    check_host_labels(host_y, out, "evaluate")
                    totals.add(self._per_example_sum(loss.loss(yb, out), out),
                               self._metric_sums(yb, out), int(Xb.shape[0]))
            return totals.logs()
        if y is None:
            msg = "Sequential.evaluate: expected targets y with the inputs X"
            raise ValueError(msg)
        return self._evaluate_data(self._data(X, y, "evaluate"), batch_size, comm)

    def _evaluate_data(self, data: Data, batch_size: int | None, comm: Any) -> dict[str, float]:
        """:meth:`evaluate` on checked arrays."""
        from anyml.distributed import get_comm, guarded
        from anyml.distributed.training import reduce_totals, shard

        loss = self._need_loss("evaluate")
        totals = Totals()
        step = data.n if batch_size is None else batch_size
        _check_positive("evaluate", batch_size=step)
        comm = get_comm() if comm is None else comm
        lo, hi = shard(data.n, comm.rank, comm.size)
        with guarded(comm), self._inference(), training_threads():
            for start in range(lo, hi, step):
                Xb, yb = data.batch(None, start, min(step, hi - start))
                out = self.forward(Xb, retain_derived=False)
                data.check_labels(out, "evaluate")
                totals.add(self._per_example_sum(loss.loss(yb, out, **self._checked), out),
                           self._metric_sums(yb, out), int(Xb.shape[0]))
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
        with guarded(comm), self._inference(), training_threads():
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

    def _metric_sums(self, y: Array, out: Array) -> dict[str, Array]:
        """Each metric's sum over the batch (0-d arrays on the device)."""
        return {m.name: m(y, out) for m in self.metrics}


def _innermost(layer: Any) -> LayerBase:
    while isinstance(layer, WrapperBase):
        layer = layer.base_layer
    return layer


def _check_validation_data(value: Any) -> None:
    """``(X_val, y_val)`` arrays, or an iterable of ``(X, y)`` minibatches."""
    if value is None:
        return
    pair = isinstance(value, tuple | list) and len(value) > 0 and hasattr(value[0], "shape")
    if pair and len(value) == 2:
        return
    if pair or isinstance(value, tuple | str | bytes) or hasattr(value, "shape") or not (
            callable(value) or hasattr(value, "__iter__")):
        got = (f"a {type(value).__name__} of {len(value)}" if isinstance(value, tuple | list)
               else type(value).__name__)
        msg = (f"Sequential.fit: validation_data must be a pair (X_val, y_val) or an iterable of "
               f"(X, y) minibatches, got {got}")
        raise ValueError(msg)


def _split(X: Any, y: Any, fraction: float) -> tuple[Any, Any, tuple[Any, Any]]:
    """``(X_train, y_train, (X_val, y_val))``: the last ``fraction`` of the examples held out."""
    fraction = real("Sequential.fit", "validation_split", fraction, low=0.0, high=1.0,
                    high_open=True)
    n = len(X)
    n_val = int(n * fraction)
    if n_val < 1 or n_val >= n:
        msg = (f"Sequential.fit: validation_split={fraction} of {n} examples leaves "
               f"{n - n_val} to train on and {n_val} to validate; both need at least one")
        raise ValueError(msg)
    cut = n - n_val
    X = X if hasattr(X, "shape") else np.asarray(X)
    y = y if hasattr(y, "shape") else np.asarray(y)
    return X[:cut], y[:cut], (X[cut:], y[cut:])


def _same_backend(a: Backend, b: Backend) -> bool:
    return a is b or (a.name == b.name and a.device == b.device and a.dtype == b.dtype)


def _check_positive(owner: str, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            msg = f"Sequential.{owner}: {name} must be a positive integer, got {value!r}"
            raise ValueError(msg)
