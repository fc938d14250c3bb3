"""``LayerBase``: what every layer shares (parameters, gradients, caches, optimizer, summary, moves)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from anyml.activations import get_activation
from anyml.backend import Backend, resolve_backend, to_numpy
from anyml.optimizers import Optimizer, get_optimizer

__all__ = ["LayerBase", "accepts_gradient_list"]

Array = Any

#: Keys of a summary or hyperparameter dict that describe the layer but are not settable.
_DESCRIPTIVE_KEYS = frozenset({"layer", "id", "wrappers"})


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
    #: Other names numpy-ml gives this layer in a summary's ``"layer"`` entry (e.g. ``"Sum"``).
    _summary_names: tuple[str, ...] = ()
    #: Keys numpy-ml writes in this layer's summary that mean nothing here; ``set_params`` skips them.
    _ignored_summary_keys: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("backward")
        if method is not None:
            cls.backward = accepts_gradient_list(method)  # type: ignore[method-assign]

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
        return all(name in self.parameters for name in self._param_shapes())

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
        """Zero the accumulated gradients and drop every retained forward pass."""
        self._caches.clear()
        for name, grad in self.gradients.items():  # zeros, not zeros_like: NumPy's calloc is cheaper
            self.gradients[name] = self.xp.zeros(grad.shape, dtype=grad.dtype, device=grad.device)

    def update(self, cur_loss: float | None = None, *, check_finite: bool = True) -> None:
        """Apply the optimizer to every trainable parameter, then :meth:`flush_gradients`.

        Parameters
        ----------
        cur_loss : float, optional
            The current loss, for schedulers that use it (``KingScheduler``).
        check_finite : bool
            Check the updated parameters for NaN and infinity (one device synchronization). A model
            container passes ``False`` and checks all its layers with a single synchronization.

        Raises
        ------
        FloatingPointError
            If a parameter holds NaN or infinity after the update (the message names it).
        """
        updated = self.trainable and bool(self.gradients)
        if updated:
            for name, grad in self.gradients.items():
                self.parameters[name] = self.optimizer(self.parameters[name], grad, name, cur_loss)
            self.optimizer.step()
        self.flush_gradients()
        if updated and check_finite:
            self._raise_if_not_finite()

    def _finite_flag(self) -> Array | None:
        """A 0-d boolean array on the device: are all trainable parameters finite? ``None`` when the
        layer has none to check (no gradients, or frozen)."""
        if not (self.trainable and self.gradients):
            return None
        xp = self.xp
        flag = None
        for name in self.gradients:
            finite = xp.all(xp.isfinite(self.parameters[name]))
            flag = finite if flag is None else flag & finite
        return flag

    def _raise_if_not_finite(self) -> None:
        flag = self._finite_flag()
        if flag is None or bool(flag):
            return
        xp = self.xp
        bad = [name for name in self.gradients if not bool(xp.all(xp.isfinite(self.parameters[name])))]
        msg = (f"{type(self).__name__}: parameter(s) {bad} hold NaN or inf after the update; lower "
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
        numpy-ml's summaries included. Parameter values may be arrays of any backend, host arrays or
        nested lists; they are reshaped to the layer's layout when only singleton axes differ
        (numpy-ml keeps biases as ``(1, n)``). Keys the summary does not mention keep their values.

        Raises
        ------
        ValueError
            On an unknown key, a summary of another layer class, or a parameter of another layout
            (a transposed matrix is refused, not silently reshaped).
        """
        flat: dict[str, Any] = {}
        for key, value in summary_dict.items():
            if key in ("parameters", "hyperparameters") and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[key] = value
        name = type(self).__name__
        if flat.get("layer", name) not in (name, *self._summary_names):
            msg = f"{name}.set_params: the summary describes a {flat['layer']!r} layer"
            raise ValueError(msg)
        known_hp = set(self._config()) | {"optimizer", "act_fn"}
        params = {}
        for key, value in flat.items():
            if key in _DESCRIPTIVE_KEYS or key in self._ignored_summary_keys:
                continue
            if key in self._param_shapes() or key in self.parameters:
                params[key] = value
            elif key == "optimizer":
                self._set_optimizer(value)
            elif key in known_hp:
                self._set_hyperparameter(key, value)
            else:
                msg = f"{name}.set_params: unknown key {key!r}; expected one of {sorted(known_hp)}"
                raise ValueError(msg)
        for key, value in params.items():
            self._load_param(key, value)
        return self

    def _set_hyperparameter(self, key: str, value: Any) -> None:
        """Set one hyperparameter from a summary value; layers with derived state override this."""
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
        self.optimizer = get_optimizer(value)
        self._optimizer_given = True
        if isinstance(value, Mapping):
            if value.get("cache"):
                self.optimizer.load_cache(value["cache"], self.backend.asarray)
            if value.get("state") is not None:
                self.optimizer.load_state(value["state"])

    def _load_param(self, key: str, value: Any) -> None:
        host = to_numpy(value)
        declared = self._param_shapes().get(key)
        if declared is None or None in declared:
            self._infer_from_param(key, host.shape)
            declared = self._param_shapes().get(key)
        expected = host.shape if declared is None or None in declared else tuple(
            int(dim) for dim in declared if dim is not None)
        if _squeezed(host.shape) != _squeezed(expected):
            msg = (f"{type(self).__name__}.set_params: parameter {key!r} should have shape "
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
        self.parameters = {k: new.asarray(v) for k, v in self.parameters.items()}
        self.gradients = {k: new.asarray(v) for k, v in self.gradients.items()}
        self.optimizer.map_cache(new.asarray)
        self._caches.clear()
        self.backend, self.xp = new, new.xp
        return self

    # ------------------------------------------------------------------ helpers for subclasses
    def _new_param(self, name: str, host_value: Any) -> None:
        """Store a host array (or an array of this backend) as a parameter (backend dtype and device)
        with a zero gradient."""
        self.parameters[name] = self.backend.asarray(host_value)
        if name in self._trainable_names:
            self.gradients[name] = self.xp.zeros_like(self.parameters[name])

    def _accumulate(self, retain_grads: bool, **grads: Array) -> None:
        """Add parameter gradients into :attr:`gradients` (skipped when frozen or not retained)."""
        if retain_grads and self.trainable:
            for name, grad in grads.items():
                self.gradients[name] += grad

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
        """Raise a clear error unless ``X`` is a float array of this backend with ``ndim`` axes."""
        owner = type(self).__name__
        self.backend.check_array(X, owner, name)
        if ndim is not None and X.ndim != ndim:
            msg = f"{owner}: expected {name} of shape {shape or f'with {ndim} axes'}, got {tuple(X.shape)}"
            raise ValueError(msg)
        if floating and X.dtype != self.backend.dtype:
            msg = (f"{owner}: expected {name} of dtype {self.backend.dtype_name} (the backend's), got "
                   f"{X.dtype}; convert it with backend.asarray({name})")
            raise TypeError(msg)

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
