"""``LayerBase``: what every layer shares (parameters, gradients, caches, optimizer, summary, moves)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import operator
from collections.abc import Callable, Iterator, Mapping
from numbers import Real
from typing import Any, TypeVar

from anyml._finite import FiniteWatch
from anyml._validate import host_floats, is_integer
from anyml.activations import get_activation
from anyml.backend import Array, Backend, activated, resolve_backend, to_numpy
from anyml.functional._memo import memo
from anyml.optimizers import Optimizer, get_optimizer

T = TypeVar("T")

#: Where :meth:`LayerBase._plan` puts the input shape among the arguments.
SHAPE = object()

__all__ = ["LayerBase", "accepts_gradient_list", "all_true"]


#: Keys of a summary or hyperparameter dict that describe the layer but are not settable.
_DESCRIPTIVE_KEYS = frozenset({"layer", "id", "wrappers"})
#: Sizes learned from the data (or a summary): ``None`` until known, else a positive integer.
_SIZE_KEYS = frozenset({"n_in", "n_out", "in_ch", "out_ch", "in_rows", "in_cols", "vocab_size"})

_defer_params: contextvars.ContextVar[bool] = contextvars.ContextVar("anyml_defer_params",
                                                                      default=False)


@contextlib.contextmanager
def deferred_parameters() -> Iterator[None]:
    """Build layers without creating their parameters inside this block.

    Layers that create their parameters in the constructor (``Embedding``) leave them for
    :meth:`LayerBase.set_params` to load, so nothing is drawn from the random generators and nothing
    of the size a setting claims is allocated: :meth:`LayerBase.set_params` runs the constructor to
    check settings, and :func:`anyml.load` builds each layer before loading its arrays.
    """
    token = _defer_params.set(True)
    try:
        yield
    finally:
        _defer_params.reset(token)


def parameters_deferred() -> bool:
    """Whether layers built now should leave their parameters to ``set_params`` (see
    :func:`deferred_parameters`)."""
    return _defer_params.get()

#: The public methods that compute on the layer's device; each runs inside ``backend.activate()``.
DEVICE_METHODS = ("forward", "backward", "update", "flush_gradients", "set_params", "reconstruct",
                  "free_energy", "CD_update", "evolve_connections", "reset_running_stats", "lookup",
                  "reset_state")


def activate_device_methods(cls: type) -> None:
    """Make the :data:`DEVICE_METHODS` that ``cls`` defines run on its backend's device."""
    for name in DEVICE_METHODS:
        method = cls.__dict__.get(name)
        if method is not None and not getattr(method, "__anyml_activated__", False):
            setattr(cls, name, activated(method))


class LayerBase:
    """Base class of all layers.

    A layer holds its trainable ``parameters`` and their accumulated ``gradients`` on one
    :class:`~anyml.backend.Backend`, chosen when the layer is built (``backend=`` or the current one).

    Each ``forward(..., retain_derived=True)`` pushes what the backward pass needs onto a stack, and
    each ``backward`` pops the most recent entry, returns the gradient for that call's input(s) and adds
    the parameter gradients into :attr:`gradients`. A layer applied twice (weight sharing) is therefore
    backpropagated by two ``backward`` calls in reverse order, and ``backward`` returns the same type
    however many forwards came before (numpy-ml switches between an array and a list).

    ``backward`` also takes the list form of numpy-ml: a list of gradients, one per retained forward
    pass, oldest first, returns a list of input gradients in the same order (a plain number, such as
    numpy-ml's ``0``, stands for a gradient of that constant value). All the retained passes are
    gone back through (newest first) and consumed, as with one call per pass; numpy-ml instead keeps
    ``layer.X`` and its derived variables until :meth:`update`, so code that backpropagates the same
    passes twice needs a second forward here.

    A frozen layer (:meth:`freeze`) keeps its parameters but still passes gradients to its input.

    Where this differs from numpy-ml's layers: biases are 1-D (``(n_out,)``; numpy-ml's ``(1, n_out)``
    or ``(1, 1, 1, out_ch)`` load through :meth:`set_params`), a retained forward pass is consumed
    by its ``backward`` (numpy-ml keeps ``layer.X`` until :meth:`update`), and arrays are float32
    unless the backend says otherwise (numpy-ml computes in float64). Inputs are channels-last, as in
    numpy-ml.

    Parameters
    ----------
    optimizer : str, dict, Optimizer or None
        The update rule used by :meth:`update`; ``None`` means ``SGD()`` for a layer used on its own,
        and the model's optimizer inside a :class:`~anyml.model.Sequential` (``Adam()`` unless the
        model is given another). An optimizer object is copied, since each layer keeps its own
        optimizer state.
    backend : str or Backend, optional
        Where the parameters live; default :func:`anyml.get_backend`.
    """

    #: Names of the parameters that the optimizer updates; the others in ``parameters`` are state.
    _trainable_names: tuple[str, ...] = ()
    #: Trainable parameters whose zeros :meth:`flush_gradients` remembers, for a backward that makes
    #: use of a gradient known to be zero (:meth:`_gradient_is_zero`, asked before every write of
    #: that gradient). :meth:`_accumulate` then keeps the first gradient after a flush as it is,
    #: instead of adding it into the zeros: the layer's backward must hand it new arrays for these
    #: names, that nothing else holds or writes afterwards (no view of an input, a cache or a
    #: workspace, on every backend and fast path); later ones are added into it in place.
    _fresh_gradients: frozenset[str] = frozenset()
    #: Other names numpy-ml gives this layer in a summary's ``"layer"`` entry (e.g. ``"Sum"``).
    _summary_names: tuple[str, ...] = ()
    #: Keys numpy-ml writes in this layer's summary that mean nothing here; ``set_params`` skips them.
    _ignored_summary_keys: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.__init__ = _naming_errors(vars(cls)["__init__"])  # type: ignore[method-assign]
        method = cls.__dict__.get("backward")
        if method is not None:
            cls.backward = accepts_gradient_list(method)  # type: ignore[method-assign]
        activate_device_methods(cls)

    def __init__(self, optimizer: Any = None, *, backend: str | Backend | None = None) -> None:
        self.backend = resolve_backend(backend)
        self.xp = self.backend.xp
        self.optimizer: Optimizer = get_optimizer(optimizer)
        #: Whether the optimizer was chosen for this layer (a model's optimizer replaces it if not).
        self._optimizer_given = optimizer is not None
        self.trainable = True
        self.training = True
        self.parameters: dict[str, Array] = {}
        self.gradients: dict[str, Array] = {}
        self._caches: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ the seed API
    def forward(self, X: Any, retain_derived: bool = True) -> Array:
        """Compute the layer output; see the subclass."""
        raise NotImplementedError

    def backward(self, dLdy: Any, retain_grads: bool = True) -> Any:
        """Backpropagate the gradient of the loss wrt. the output; see the subclass."""
        raise NotImplementedError

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The layer's configuration: ``layer`` (its class name), its settings and its optimizer
        (``{"cache", "hyperparameters", "state"}``: host copies of the state arrays, the optimizer's
        hyperparameters, and its step count and scheduler state from ``Optimizer.state()``)."""
        return {
            "layer": type(self).__name__,
            **self._config(),
            "optimizer": {
                "cache": self.optimizer_cache_host(),
                "hyperparameters": self.optimizer.hyperparameters,
                "state": self.optimizer.state(),
            },
        }

    def _config(self) -> dict[str, Any]:
        """The layer-specific hyperparameters (JSON-friendly values)."""
        return {}

    @property
    def derived_variables(self) -> dict[str, list[Array]]:
        """What the retained forward passes computed, by name, oldest first (read-only view)."""
        out: dict[str, list[Array]] = {}
        for cache in self._caches:
            for key, value in cache.items():
                if key != "X" and not key.startswith("_"):
                    out.setdefault(key, []).append(value)
        return out

    @property
    def X(self) -> list[Any]:
        """The inputs of the retained forward passes, oldest first."""
        return [cache["X"] for cache in self._caches if "X" in cache]

    @property
    def is_initialized(self) -> bool:
        """Whether every parameter exists (layers with lazy shapes create them at the first forward)."""
        return self.parameters.keys() >= self._param_shapes().keys()  # a set test: every forward asks

    def freeze(self) -> None:
        """Stop updating the parameters; the layer still passes gradients back to its input."""
        self.trainable = False

    def unfreeze(self) -> None:
        """Resume updating the parameters."""
        self.trainable = True

    def train(self, mode: bool = True) -> LayerBase:
        """Switch to training (``mode=True``) or inference behaviour; return the layer.

        Only layers that behave differently in inference (batch normalization, dropout) look at
        :attr:`training`; a model container switches all its layers at once.
        """
        self.training = bool(mode)
        return self

    def eval(self) -> LayerBase:
        """Switch to inference behaviour (same as ``train(False)``); return the layer."""
        return self.train(False)

    def flush_gradients(self) -> None:
        """Zero the accumulated gradients and drop every retained forward pass.

        Each gradient becomes a new zero array (an array handed out before is never changed); those
        of :attr:`_fresh_gradients` are remembered as zero until the next backward (see
        :meth:`_gradient_is_zero`).
        """
        self._caches.clear()
        for name, grad in self.gradients.items():  # zeros, not zeros_like: NumPy's calloc is cheaper
            self.gradients[name] = self.xp.zeros(grad.shape, dtype=grad.dtype, device=grad.device)
        fresh = self._fresh_gradients
        if fresh:
            self.__dict__["_zero_gradients"] = {name: grad for name, grad in self.gradients.items()
                                                if name in fresh}

    def update(self, cur_loss: float | None = None, *, check_finite: bool = True) -> None:
        """Apply the optimizer to every trainable parameter, then :meth:`flush_gradients`.

        Parameters
        ----------
        cur_loss : float, optional
            The current loss, for schedulers that use it (``KingScheduler``).
        check_finite : bool
            Watch the updated parameters for NaN and infinity. The check is a flag kept on the
            device; the host reads it (one synchronization) at the first update and every
            :data:`anyml._finite.CHECK_EVERY` updates, and then reports the update at which the
            values first went bad. A model container passes ``False`` and watches all its layers
            together.

        Raises
        ------
        FloatingPointError
            If a parameter held NaN or infinity after an update (the message names it and the
            update).
        """
        updated = self.trainable and bool(self.gradients)
        if updated:
            for name, grad in self.gradients.items():
                self.parameters[name] = self.optimizer(self.parameters[name], grad, name, cur_loss)
            self.optimizer.step()
        self.flush_gradients()
        if updated and check_finite:
            watch = self.__dict__.setdefault("_finite_watch", FiniteWatch())
            watch.record(self._finite_flag(), self.xp)
            if watch.due():
                step = watch.first_bad_step()
                if step is not None:
                    self._raise_if_not_finite(step)

    def _finite_flag(self) -> Array | None:
        """A 0-d boolean array on the device: are all trainable parameters finite? ``None`` when the
        layer has none to check (no gradients, or frozen)."""
        return all_true(self.xp, self._finite_parts())

    def _finite_parts(self) -> list[Array]:
        """One 0-d boolean array per trainable parameter, on the device: is it all finite? Then the
        layer's :meth:`_extra_finite_parts`. No parameter flags when the layer has none to check (no
        gradients, or frozen). A model folds the parts of all its layers into one flag
        (:func:`all_true`)."""
        extra = self._extra_finite_parts()
        if not (self.trainable and self.gradients):
            return extra
        xp, params = self.xp, self.parameters
        return [xp.all(xp.isfinite(params[name])) for name in self.gradients] + extra

    def _extra_finite_parts(self) -> list[Array]:
        """Flags a layer adds to its parameters' finiteness parts (0-d boolean arrays, ``True`` when
        all is well), asked once per update; a model's grouped optimizer step, which checks the
        parameters of a whole group at once, still folds these in. None by default."""
        return []

    def _raise_if_not_finite(self, step: int | None = None) -> None:
        flag = self._finite_flag()
        if flag is None or bool(flag):
            return
        xp = self.xp
        bad = [name for name in self.gradients if not bool(xp.all(xp.isfinite(self.parameters[name])))]
        when = "after the update" if step is None else f"since update {step}"
        msg = (f"{type(self).__name__}: parameter(s) {bad} hold NaN or inf {when}; lower "
               f"the learning rate, clip the gradients (clip_norm=...) or check the loss")
        raise FloatingPointError(msg)

    def summary(self) -> dict[str, Any]:
        """``{"layer", "parameters", "hyperparameters"}`` with the parameters as NumPy host copies."""
        return {
            "layer": type(self).__name__,
            "parameters": {name: to_numpy(value).copy() for name, value in self.parameters.items()},
            "hyperparameters": self.hyperparameters,
        }

    def set_params(self, summary_dict: Mapping[str, Any]) -> LayerBase:
        """Set parameters and hyperparameters from a :meth:`summary`-style dict; return the layer.

        Accepts the nested form ``{"parameters": {...}, "hyperparameters": {...}}`` or a flat dict,
        numpy-ml's summaries included. Keys the summary does not mention keep their values.

        Everything is checked before the layer changes (on any error it is left as it was):

        - the hyperparameters the constructor takes go through the constructor's own checks (it is
          run on the settings as they would be after the update, without creating parameters), so
          ``set_params`` accepts exactly what the constructor accepts; sizes learned from the data
          (``n_in``, ``in_ch`` ...) must be positive integers or ``None``;
        - each parameter must hold real floating-point numbers (float16, float32 or float64, cast to
          the backend's dtype: the layer computes in that precision, as it would had it been trained
          there), all finite, in the layer's layout. Values may be arrays of any backend, host
          arrays or nested lists; they are reshaped only when singleton axes alone differ (numpy-ml
          keeps biases as ``(1, n)``; a transposed matrix is refused). Integer, boolean, complex,
          text and object arrays are refused, not converted;
        - the parameters must agree with the hyperparameters afterwards (a new ``n_out`` needs new
          weights of that size), and a saved optimizer state must name this layer's trainable
          parameters, with the state entries its optimizer keeps, each shaped like its parameter.

        Raises
        ------
        TypeError
            If ``summary_dict`` is not a dict, or a parameter is not an array of numbers.
        ValueError
            On an unknown key, a summary of another layer class, a setting the constructor refuses,
            or a parameter or optimizer state that does not fit the layer. The message names the
            layer and the key.
        """
        name = type(self).__name__
        if not isinstance(summary_dict, Mapping):
            msg = (f"{name}.set_params: expected a dict such as summary() returns, got "
                   f"{type(summary_dict).__name__}")
            raise TypeError(msg)
        flat: dict[str, Any] = {}
        for key, value in summary_dict.items():
            if key in ("parameters", "hyperparameters") and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        for key in flat:
            if not isinstance(key, str):
                msg = f"{name}.set_params: keys must be strings, got {key!r}"
                raise TypeError(msg)
        if flat.get("layer", name) not in (name, *self._summary_names):
            msg = f"{name}.set_params: the summary describes a {flat['layer']!r} layer"
            raise ValueError(msg)
        known_hp = set(self._config()) | {"optimizer", "act_fn"}
        params, hyper = {}, {}
        optimizer = None
        for key, value in flat.items():
            if key in _DESCRIPTIVE_KEYS or key in self._ignored_summary_keys:
                continue
            if key in self._param_shapes() or key in self.parameters:
                params[key] = value
            elif key == "optimizer":
                optimizer = value
            elif key in known_hp:
                hyper[key] = value
            else:
                msg = f"{name}.set_params: unknown key {key!r}; expected one of {sorted(known_hp)}"
                raise ValueError(msg)
        hyper = self._checked_hyperparameters(hyper)
        saved = dict(vars(self))
        saved_params, saved_grads = dict(self.parameters), dict(self.gradients)
        try:
            if optimizer is not None:
                self._set_optimizer(optimizer)
            for key, value in hyper.items():
                self._set_hyperparameter(key, value)
            for key, value in params.items():
                self._load_param(key, value)
            self._check_consistent()
        except BaseException:
            vars(self).clear()
            vars(self).update(saved)
            self.parameters.clear()
            self.parameters.update(saved_params)
            self.gradients.clear()
            self.gradients.update(saved_grads)
            raise
        return self

    def _checked_hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """The settings of a summary, checked by the constructor: it is run (without creating
        parameters) on the layer's settings with these applied; returns them, those the constructor
        takes as it stored them."""
        name = type(self).__name__
        out = dict(hyper)
        for key, value in hyper.items():
            if key in _SIZE_KEYS and value is not None and not (is_integer(value) and value >= 1):
                msg = f"{name}.set_params: {key} must be a positive integer or None, got {value!r}"
                raise ValueError(msg)
        try:
            signature = inspect.signature(type(self).__init__)
        except (TypeError, ValueError):  # pragma: no cover - a constructor without a signature
            return out
        args: dict[str, Any] = {}
        for p in list(signature.parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("optimizer", "backend"):
                continue
            if p.name in hyper:
                args[p.name] = hyper[p.name]
            elif hasattr(self, p.name):
                args[p.name] = getattr(self, p.name)
        if not any(key in args for key in hyper) and not hyper.keys() & {"act_fn"}:
            return out
        try:
            with deferred_parameters():
                trial = type(self)(**args, backend=self.backend)
        except (ValueError, TypeError) as exc:
            text = str(exc)
            prefix = f"{name}: "
            text = text[len(prefix):] if text.startswith(prefix) else text
            msg = f"{name}.set_params: {text}"
            raise type(exc)(msg) from exc
        for key in hyper:
            if key in args and key in vars(trial):
                out[key] = getattr(trial, key)
        return out

    def _check_consistent(self) -> None:
        """Raise unless every parameter has the shape the hyperparameters give it, and the optimizer
        state fits the parameters."""
        name = type(self).__name__
        for key, declared in self._param_shapes().items():
            value = self.parameters.get(key)
            if value is None or None in declared:
                continue
            want = tuple(int(d) for d in declared)  # type: ignore[arg-type]
            if tuple(value.shape) != want:
                msg = (f"{name}.set_params: parameter {key!r} has shape {tuple(value.shape)}, but "
                       f"the hyperparameters give {want}; set both together")
                raise ValueError(msg)
        for pname, state in self.optimizer.cache.items():
            opt = type(self.optimizer).__name__
            if pname not in self._trainable_names:
                msg = (f"{name}.set_params: the optimizer state names a parameter {pname!r}; this "
                       f"layer trains {list(self._trainable_names)}")
                raise ValueError(msg)
            expected = set(self.optimizer._new_state(self.xp.zeros(()), self.xp))
            if set(state) != expected:
                msg = (f"{name}.set_params: the {opt} state of {pname!r} should hold "
                       f"{sorted(expected)}, got {sorted(state)}")
                raise ValueError(msg)
            shape = tuple(self.parameters[pname].shape) if pname in self.parameters else None
            for entry, value in state.items():
                if hasattr(value, "shape"):
                    if shape is not None and tuple(value.shape) != shape:
                        msg = (f"{name}.set_params: the {opt} state {entry!r} of {pname!r} has shape "
                               f"{tuple(value.shape)}, the parameter {shape}")
                        raise ValueError(msg)
                elif not (is_integer(value) and value >= 0):
                    msg = (f"{name}.set_params: the {opt} state {entry!r} of {pname!r} should be a "
                           f"non-negative integer, got {value!r}")
                    raise ValueError(msg)

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        """Set one hyperparameter from a summary value (already checked by the constructor, see
        :meth:`set_params`); layers with derived state override this."""
        if key == "act_fn":
            if getattr(self, "act_fn", None) is None:  # numpy-ml writes act_fn=None where there is none
                if value not in (None, "None", "Identity"):
                    msg = f"{type(self).__name__} has no activation, got act_fn={value!r}"
                    raise ValueError(msg)
                return
            value = get_activation(value)
        setattr(self, key, value)

    def _set_optimizer(self, value: Any) -> None:
        """Build the optimizer from a spec or a summary, restoring a summary's saved state: the
        cache onto this backend and the ``"state"`` entry (absent from numpy-ml's summaries)."""
        name = type(self).__name__
        try:
            optimizer = get_optimizer(value)
        except (ValueError, TypeError) as exc:
            msg = f"{name}.set_params: bad optimizer: {exc}"
            raise type(exc)(msg) from exc
        if isinstance(value, Mapping):
            cache = value.get("cache")
            if cache:
                if not isinstance(cache, Mapping):
                    msg = (f"{name}.set_params: the optimizer cache should be a dict of parameter "
                           f"names, got {type(cache).__name__}")
                    raise ValueError(msg)
                optimizer.load_cache(self._checked_cache(cache), self.backend.asarray)
            if value.get("state") is not None:
                try:
                    optimizer.load_state(value["state"])
                except (ValueError, TypeError) as exc:
                    msg = f"{name}.set_params: bad optimizer state: {exc}"
                    raise ValueError(msg) from exc
        self.optimizer = optimizer
        self._optimizer_given = True

    def _checked_cache(self, cache: Mapping[str, Any]) -> dict[str, Any]:
        """A saved optimizer cache with each array as a checked host array (real floats, finite)."""
        out: dict[str, Any] = {}
        for pname, saved in cache.items():
            where = f"the optimizer state of {pname!r}"
            if isinstance(saved, Mapping):
                out[pname] = {k: v if is_integer(v) else self._host_floats(v, f"{where}, {k!r}")
                              for k, v in saved.items()}
            else:
                out[pname] = self._host_floats(saved, where)
        return out

    def _host_floats(self, value: Any, what: str) -> Any:
        """``value`` as a host array of real floats, all finite; a clear error otherwise."""
        return host_floats(f"{type(self).__name__}.set_params", what, value, self.backend.dtype_name)

    def _load_param(self, key: str, value: Any) -> None:
        name = type(self).__name__
        host = self._host_floats(value, f"parameter {key!r}")
        if host.ndim == 0 or 0 in host.shape:
            msg = f"{name}.set_params: parameter {key!r} must have a size on every axis, got {host.shape}"
            raise ValueError(msg)
        declared = self._param_shapes().get(key)
        if declared is None and key in self.parameters:
            declared = tuple(int(d) for d in self.parameters[key].shape)
        if declared is not None and None in declared:
            self._infer_from_param(key, host.shape)
            declared = self._param_shapes().get(key)
        if declared is None or None in declared:
            msg = (f"{name}.set_params: parameter {key!r} of shape {host.shape} does not fit the "
                   f"layout {_layout(declared)}")
            raise ValueError(msg)
        expected = tuple(int(dim) for dim in declared)  # type: ignore[arg-type]
        if _squeezed(host.shape) != _squeezed(expected):
            msg = (f"{name}.set_params: parameter {key!r} should have shape "
                   f"{expected}, got {host.shape}")
            raise ValueError(msg)
        self.parameters[key] = self.backend.from_host(host.reshape(expected))
        if key in self._trainable_names:
            self.gradients[key] = self.xp.zeros_like(self.parameters[key])

    def _param_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """Each parameter's shape from the hyperparameters (``None`` where not yet known)."""
        return {}

    def _infer_from_param(self, key: str, shape: tuple[int, ...]) -> None:
        """Learn sizes not yet known (such as ``n_in``) from a parameter being loaded."""

    def optimizer_cache_host(self) -> dict[str, Any]:
        """The optimizer state as NumPy host copies."""
        return {name: {k: to_numpy(v).copy() if hasattr(v, "shape") else v for k, v in state.items()}
                for name, state in self.optimizer.cache.items()}

    # ------------------------------------------------------------------ beyond the seed
    def to(self, backend: str | Backend) -> LayerBase:
        """Move parameters, gradients and optimizer state to another backend; return the layer.

        Retained forward passes are dropped (call :meth:`forward` again on the new backend).
        """
        new = resolve_backend(backend)

        def move(x: Array) -> Array:  # a move: memory on the same device is shared (DLPack)
            return new.asarray(x, copy=False)

        self.parameters = {k: move(v) for k, v in self.parameters.items()}
        self.gradients = {k: move(v) for k, v in self.gradients.items()}
        self.__dict__.pop("_zero_gradients", None)  # arrays of the backend left behind
        self.optimizer.map_cache(move)
        self._caches.clear()
        self.backend, self.xp = new, new.xp
        return self

    # ------------------------------------------------------------------ helpers for subclasses
    def _new_param(self, name: str, host_value: Any) -> None:
        """Store a host array (or an array of this backend) as a parameter (backend dtype and device)
        with a zero gradient."""
        with self.backend.activate():
            self.parameters[name] = self.backend.asarray(host_value)
            if name in self._trainable_names:
                self.gradients[name] = self.xp.zeros_like(self.parameters[name])

    def _gradient_is_zero(self, name: str) -> bool:
        """Whether ``gradients[name]`` is still the zero array that :meth:`flush_gradients` made
        (always ``False`` for a name outside :attr:`_fresh_gradients`).

        Asked by a backward just before it writes the gradient, so the answer is forgotten: the next
        call answers ``False`` until the next flush. A gradient replaced in between (a model's
        grouped optimizer step, a reduction across processes, :meth:`to`) is not that array and
        answers ``False``; one changed in place between the flush and the backward would be taken
        for zeros (nothing in anyml does so).
        """
        zeros = self.__dict__.get("_zero_gradients")
        if not zeros:
            return False
        zero = zeros.pop(name, None)
        return zero is not None and zero is self.gradients.get(name)

    def _accumulate(self, retain_grads: bool, **grads: Array) -> None:
        """Add parameter gradients into :attr:`gradients` (skipped when frozen or not retained).

        For the names in :attr:`_fresh_gradients`, the first gradient after a flush is kept as it
        is (when its shape and dtype are the accumulator's) instead of being added into the zeros:
        one pass over a large gradient instead of three (write it, read it and the zeros, write
        the sum).
        """
        if retain_grads and self.trainable:
            gradients, fresh = self.gradients, self._fresh_gradients
            for name, grad in grads.items():
                if name in fresh and self._gradient_is_zero(name):
                    acc = gradients[name]
                    if grad.shape == acc.shape and grad.dtype == acc.dtype:
                        gradients[name] = grad
                        continue
                gradients[name] += grad

    def _retained_output_shapes(self) -> list[tuple[int, ...]]:
        """The output shape of each retained forward pass, oldest first (for the list form)."""
        return [tuple(cache.get("_shape", ())) for cache in self._caches]

    def _collate_list_grads(self, grads: list[Any]) -> Any:
        """What the list form of ``backward`` returns, given each pass's result (oldest first)."""
        return grads

    def _push(self, retain_derived: bool, **cache: Any) -> None:
        if retain_derived:
            self._caches.append(cache)

    def _pop(self, dLdy: Any = None) -> dict[str, Any]:
        """Take the most recent retained forward pass, after checking ``dLdy`` against its output."""
        if not self._caches:
            msg = (f"{type(self).__name__}: backward called with no retained forward pass; call "
                   f"forward(..., retain_derived=True) first (update() and flush_gradients() "
                   f"drop retained passes)")
            raise RuntimeError(msg)
        if dLdy is not None:
            self._check_grad(dLdy, self._caches[-1]["_shape"])
        return self._caches.pop()

    def _check_input(self, X: Any, ndim: int | None = None, shape: str = "", name: str = "X",
                     floating: bool = True) -> None:
        """Raise a clear error unless ``X`` is a float array of this backend with ``ndim`` axes.

        Runs at every forward and backward, so the passing case is a handful of attribute reads; the
        messages are built only on failure.
        """
        backend = self.backend
        if not backend.owns(X):
            backend.check_array(X, type(self).__name__, name)
        if ndim is not None and X.ndim != ndim:
            msg = (f"{type(self).__name__}: expected {name} of shape {shape or f'with {ndim} axes'}, "
                   f"got {tuple(X.shape)}")
            raise ValueError(msg)
        if self._trainable_names and 0 in X.shape[1:]:
            msg = (f"{type(self).__name__}: {name} of shape {tuple(X.shape)} has an empty axis; only "
                   f"the batch axis (the first) may be empty: the parameters need at least one value "
                   f"along the others")
            raise ValueError(msg)
        if floating and X.dtype != backend.dtype:
            want = backend.dtype_name
            msg = (f"{type(self).__name__}: expected {name} of dtype {want} (the backend's), got "
                   f"{X.dtype}; convert it with backend.asarray({name}, dtype={want!r})")
            if not self.xp.isdtype(X.dtype, "real floating"):
                msg += (" (Sequential.fit, evaluate and predict convert integer and boolean data "
                        "themselves)")
            raise TypeError(msg)

    def _plan(self, fn: Callable[..., T], shape: Any, *args: Any) -> T:
        """``fn(*args)`` as :func:`~anyml.functional._memo.memo` gives it, with ``shape`` (an int or a
        tuple of ints, from an input array) in place of the marker :data:`SHAPE` in ``args``,
        remembered per layer for the last call.

        The last call's result is reused while the input shape is equal and every other argument is
        the very same object (the layer's validated hyperparameters): no key to build, no memo to
        look up. Anything else (a hyperparameter set anew, another shape) goes through ``memo``,
        which validates and raises as before.
        """
        last = self.__dict__.get("_last_plan")
        if (last is not None and last[0] is fn and last[1] == shape and len(last[2]) == len(args)
                and all(map(operator.is_, last[2], args))):
            return last[3]  # type: ignore[no-any-return]
        result = memo(fn, *(shape if a is SHAPE else a for a in args))
        self.__dict__["_last_plan"] = (fn, shape, args, result)
        return result

    def _check_grad(self, dLdy: Any, shape: tuple[int, ...], name: str = "dLdy") -> None:
        """Raise a clear error unless the upstream gradient matches the output's shape."""
        self._check_input(dLdy, name=name)
        if tuple(dLdy.shape) != tuple(shape):
            msg = (f"{type(self).__name__}: expected {name} of shape {tuple(shape)} (the output's), "
                   f"got {tuple(dLdy.shape)}")
            raise ValueError(msg)

    def __repr__(self) -> str:
        config = dict(self._config())
        if self._trainable_names:
            config["optimizer"] = str(self.optimizer)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


def all_true(xp: Any, flags: list[Array]) -> Array | None:
    """The 0-d boolean AND of 0-d boolean arrays (``None`` for none): two kernels however many there
    are (stack, then all), instead of one ``&`` per flag."""
    if not flags:
        return None
    if len(flags) == 1:
        return flags[0]
    if len(flags) == 2:
        return flags[0] & flags[1]
    return xp.all(xp.stack(flags))


def _naming_errors(init: Any) -> Any:
    """Wrap a layer constructor so that a ``ValueError`` or ``TypeError`` raised inside it (by an
    activation, initializer or optimizer registry, say) names the layer being built."""
    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except (ValueError, TypeError) as exc:
            name = type(self).__name__
            if name in str(exc):
                raise
            try:
                renamed = type(exc)(f"{name}: {exc}")
            except Exception:  # noqa: BLE001 - an exception type with another signature
                renamed = (TypeError if isinstance(exc, TypeError) else ValueError)(f"{name}: {exc}")
            raise renamed from exc

    return wrapped


def _layout(declared: tuple[int | None, ...] | None) -> str:
    if declared is None:
        return "of this layer"
    return "(" + ", ".join("?" if d is None else str(d) for d in declared) + ")"


def accepts_gradient_list(backward: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``backward(dLdy, ...)`` method so that it also takes numpy-ml's list form.

    Given a list of gradients, one per retained forward pass (oldest first), the wrapped method goes
    back through every pass, newest first, and returns ``owner._collate_list_grads`` of the results
    put back in forward order. Every entry is checked before any pass is consumed. A plain real
    number stands for a gradient of that constant value (numpy-ml passes ``0`` for a pass that does
    not contribute). The gradient may also be passed by keyword under either spelling the spec uses
    (``dLdy`` or ``dLdY``). Methods whose first argument is not a gradient
    (``RBM.backward(retain_grads)``) and methods already wrapped are returned unchanged.
    """
    if getattr(backward, "_accepts_list", False):
        return backward
    params = list(inspect.signature(backward).parameters)
    grad_name = params[1] if len(params) > 1 else ""
    if not grad_name.startswith("dL"):
        return backward

    @functools.wraps(backward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and grad_name not in kwargs:  # the spec writes dLdy for some layers, dLdY for others
            alias = next((k for k in kwargs if k.lower() == grad_name.lower()), None)
            if alias is not None:
                kwargs[grad_name] = kwargs.pop(alias)
        if args and isinstance(args[0], list):
            return _backward_each(self, backward, args[0], args[1:], kwargs)
        if not args and isinstance(kwargs.get(grad_name), list):
            grads = kwargs.pop(grad_name)
            return _backward_each(self, backward, grads, (), kwargs)
        return backward(self, *args, **kwargs)

    wrapper._accepts_list = True  # type: ignore[attr-defined]
    return wrapper


def _backward_each(owner: Any, backward: Callable[..., Any], grads: list[Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    """The list form of ``backward``: see :func:`accepts_gradient_list`."""
    name = type(owner).__name__
    shapes = owner._retained_output_shapes()
    if not shapes:
        msg = (f"{name}: backward called with no retained forward pass; call "
               f"forward(..., retain_derived=True) first (update() and flush_gradients() drop "
               f"retained passes)")
        raise RuntimeError(msg)
    if len(grads) != len(shapes):
        msg = (f"{name}: backward got a list of {len(grads)} gradient(s); the list form takes one per "
               f"retained forward pass, oldest first, and {len(shapes)} are retained")
        raise ValueError(msg)
    backend = owner.backend
    ready = []
    for i, (grad, shape) in enumerate(zip(grads, shapes, strict=True)):
        if isinstance(grad, Real) and not isinstance(grad, bool):
            grad = backend.xp.full(shape, float(grad), dtype=backend.dtype, device=backend.device)
        else:
            backend.check_array(grad, name, f"dLdy[{i}]")
            if tuple(grad.shape) != tuple(shape):
                msg = (f"{name}: expected dLdy[{i}] of shape {tuple(shape)} (the output of retained "
                       f"forward pass {i}), got {tuple(grad.shape)}")
                raise ValueError(msg)
        ready.append(grad)
    results = [backward(owner, grad, *args, **kwargs) for grad in reversed(ready)]
    results.reverse()
    return owner._collate_list_grads(results)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without its singleton axes: two layouts match when these agree."""
    return tuple(int(dim) for dim in shape if dim != 1)


activate_device_methods(LayerBase)
