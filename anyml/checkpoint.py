"""Checkpoints: save a layer or a :class:`~anyml.model.Sequential` to one ``.npz`` file and load it back.

The format
----------
A checkpoint is a NumPy ``.npz`` archive (a zip of ``.npy`` files) holding

- ``a0``, ``a1``, ...: the arrays, as host copies in their own dtype: every parameter (trainable or
  state such as batch-norm running statistics) and every optimizer state array;
- ``__anyml__``: a JSON text (stored as a 0-d unicode array) with the format name and version, what
  the file holds (one layer or a ``Sequential``), the loss, and for each layer its class name, its
  :meth:`~anyml.layers.base.LayerBase.summary` with every array replaced by the name of its entry
  (the summary carries the optimizer's state: its arrays, its step count and its learning-rate
  scheduler's state, such as a ``KingScheduler``'s decayed rate and loss history), and its
  ``training``/``trainable`` flags; plus each array's dtype and shape;
- ``__sha256__``: the SHA-256 digest of the JSON text and of every array's name, dtype, shape and
  bytes, in hex.

Loading reads the archive with ``allow_pickle=False``, checks that the entries are exactly those the
header lists, with the dtypes and shapes it lists, and that the digest matches, before it builds
anything. A layer is rebuilt from its class *name* looked up in an explicit registry of anyml's layer
and wrapper classes (:func:`register_layer` adds your own); nothing read from the file is ever
imported, evaluated or executed. The constructor receives the hyperparameters it names, then
``set_params`` loads the rest, the parameters and the optimizer state, onto the chosen backend, so
training resumed from a checkpoint continues exactly as the saved model would have.

The digest detects corruption and accidental edits; it is not a signature (whoever can write the
file can also rewrite the digest), so load checkpoints only from sources you trust to give you a
*correct* model. Parsing one from anywhere is safe.

Not saved: retained forward passes and accumulated gradients (a loaded model starts with zero
gradients).

Versions: version 2 keeps the optimizer's step count and scheduler state in the summary. Version 1
files (step count in a separate ``optimizer_step`` entry, no scheduler state) still load; their
schedulers start afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np

from anyml.backend import Backend, resolve_backend
from anyml.layers.base import LayerBase
from anyml.wrappers import WrapperBase

__all__ = ["FORMAT_VERSION", "layer_classes", "load", "register_layer", "save"]

FORMAT_NAME = "anyml-checkpoint"
#: The version written; files of a newer version are refused.
FORMAT_VERSION = 2
_HEADER = "__anyml__"
_DIGEST = "__sha256__"
_ARRAY, _TUPLE = "__array__", "__tuple__"

_BUILTIN_WRAPPERS = ("Dropout",)
_registered: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Let checkpoints name ``cls`` (a layer or wrapper class of your own); returns ``cls``.

    Usable as a decorator. The class is found by its ``__name__``; its constructor must accept its
    ``_config()`` entries (or the wrapped layer first, for a wrapper) as keyword arguments.
    """
    if not (isinstance(cls, type) and issubclass(cls, LayerBase | WrapperBase)):
        msg = f"register_layer: expected a LayerBase or WrapperBase subclass, got {cls!r}"
        raise TypeError(msg)
    _registered[cls.__name__] = cls
    return cls


def layer_classes() -> dict[str, type]:
    """Every class name a checkpoint may use, mapped to its class (anyml's and registered ones).

    The set is fixed by code: the public layers of :mod:`anyml.layers`, the wrappers of
    :mod:`anyml.wrappers`, and what :func:`register_layer` added.
    """
    from anyml import layers, wrappers

    out: dict[str, type] = {name: getattr(layers, name) for name in layers.__all__
                            if name != "LayerBase"}
    out.update({name: getattr(wrappers, name) for name in _BUILTIN_WRAPPERS})
    out.update(_registered)
    return out


# --------------------------------------------------------------------------- saving
def save(obj: Any, path: str | PathLike[str]) -> None:
    """Write a layer, a wrapped layer or a :class:`~anyml.model.Sequential` to ``path``.

    The file is written exactly at ``path`` (no suffix is added; ``.npz`` is customary), through a
    temporary file in the same folder, so an interrupted save never leaves a half-written checkpoint.

    Raises
    ------
    TypeError
        For another kind of object, a layer class :func:`load` could not find, or a hyperparameter
        that is not JSON data.
    """
    from anyml.model import Sequential

    if isinstance(obj, Sequential):
        layers, kind = obj.layers, "Sequential"
        loss = None if obj.loss is None else str(obj.loss)
    elif isinstance(obj, LayerBase | WrapperBase):
        layers, kind, loss = [obj], "layer", None
    else:
        msg = f"save: expected a layer or a Sequential, got {type(obj).__module__}.{type(obj).__qualname__}"
        raise TypeError(msg)
    known = layer_classes()
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for i, layer in enumerate(layers):
        for cls in _chain(layer):
            if known.get(type(cls).__name__) is not type(cls):
                msg = (f"save: layer {i} is a {type(cls).__qualname__}, which load() cannot find; "
                       f"register it with anyml.checkpoint.register_layer")
                raise TypeError(msg)
        summary = layer.summary()
        entries.append({
            "class": type(_innermost(layer)).__name__,
            "summary": _encode(summary, arrays, f"layer {i}"),
            "training": bool(layer.training),
            "trainable": bool(layer.trainable),
        })
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "loss": loss,
        "saved_from": {"backend": layers[0].backend.name, "dtype": layers[0].backend.dtype_name},
        "layers": entries,
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()},
    }
    text = json.dumps(header, sort_keys=True)
    payload = {**arrays, _HEADER: np.array(text), _DIGEST: np.array(_digest(text, arrays))}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".anyml-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _chain(layer: Any) -> list[Any]:
    """The wrappers around a layer, outermost first, then the layer."""
    out = [layer]
    while isinstance(out[-1], WrapperBase):
        out.append(out[-1].base_layer)
    return out


def _innermost(layer: Any) -> Any:
    return _chain(layer)[-1]


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """JSON data for ``value``, with each array moved into ``arrays`` and named in its place."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            msg = f"save: {where} holds an object array, which a checkpoint cannot store"
            raise TypeError(msg)
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(value)
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or k in (_ARRAY, _TUPLE):
                msg = f"save: {where} has a dict key {k!r}, which a checkpoint cannot store"
                raise TypeError(msg)
            out[k] = _encode(v, arrays, f"{where}, {k}")
        return out
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, arrays, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, where) for v in value]
    msg = (f"save: {where} holds a {type(value).__module__}.{type(value).__qualname__}, which is "
           f"neither an array nor JSON data")
    raise TypeError(msg)


def _digest(text: str, arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(text.encode("utf-8"))
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"\0{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- loading
def load(path: str | PathLike[str], *, backend: str | Backend | None = None) -> Any:
    """Read a checkpoint written by :func:`save`; return the layer or the ``Sequential``.

    Parameters
    ----------
    path : str or path-like
        The file.
    backend : str or Backend, optional
        Where to put the parameters; default the current backend. Float arrays take the backend's
        dtype, so a float64 checkpoint loads exactly into a float64 backend of any library.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a checkpoint, is truncated or modified (a changed array, header or
        digest, a missing or extra entry), names a layer class that is not registered, or holds
        settings the layer rejects. The message names the file and what is wrong.
    """
    path = os.fspath(path)
    entries = _read(path)
    header = _parse_header(path, entries)
    arrays = {k: v for k, v in entries.items() if k not in (_HEADER, _DIGEST)}
    _check_arrays(path, header, arrays)
    if str(entries[_DIGEST][()]) != _digest(str(entries[_HEADER][()]), arrays):
        msg = (f"{path}: the SHA-256 digest does not match the contents: the file was modified or "
               f"corrupted after it was saved")
        raise ValueError(msg)
    be = resolve_backend(backend)
    known = layer_classes()
    with be.activate():
        layers = [_build_layer(path, i, entry, arrays, known, be)
                  for i, entry in enumerate(header["layers"])]
    if header["kind"] == "layer":
        return layers[0]
    from anyml.model import Sequential

    try:
        return Sequential(layers, loss=header["loss"], backend=be)
    except (TypeError, ValueError) as exc:
        msg = f"{path}: cannot rebuild the Sequential: {exc}"
        raise ValueError(msg) from exc


def _read(path: str) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        msg = f"{path}: not an anyml checkpoint (not a readable .npz archive: {exc})"
        raise ValueError(msg) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        msg = f"{path}: not an anyml checkpoint (a single .npy array, not an .npz archive)"
        raise ValueError(msg)
    try:
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        msg = f"{path}: the archive is damaged or truncated ({type(exc).__name__}: {exc})"
        raise ValueError(msg) from exc


def _parse_header(path: str, entries: Mapping[str, np.ndarray]) -> dict[str, Any]:
    for name in (_HEADER, _DIGEST):
        entry = entries.get(name)
        if entry is None:
            msg = f"{path}: not an anyml checkpoint (the entry {name!r} is missing)"
            raise ValueError(msg)
        if entry.shape != () or entry.dtype.kind != "U":
            msg = f"{path}: the entry {name!r} should be a text, got {entry.dtype} {entry.shape}"
            raise ValueError(msg)
    try:
        header = json.loads(str(entries[_HEADER][()]))
    except json.JSONDecodeError as exc:
        msg = f"{path}: the header {_HEADER!r} is not valid JSON ({exc})"
        raise ValueError(msg) from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        msg = f"{path}: not an anyml checkpoint (the header names no format {FORMAT_NAME!r})"
        raise ValueError(msg)
    version = header.get("version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        msg = (f"{path}: checkpoint format version {version!r} is not supported (this anyml reads "
               f"versions 1 to {FORMAT_VERSION})")
        raise ValueError(msg)
    layers, listing = header.get("layers"), header.get("arrays")
    if (header.get("kind") not in ("layer", "Sequential") or not isinstance(layers, list)
            or not layers or not all(isinstance(e, dict) for e in layers)
            or (header["kind"] == "layer" and len(layers) != 1)
            or not isinstance(listing, dict)):
        msg = f"{path}: the header is malformed (kind, layers or arrays missing or of a wrong type)"
        raise ValueError(msg)
    return header


def _check_arrays(path: str, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    listing = header["arrays"]
    missing = sorted(set(listing) - set(arrays))
    if missing:
        msg = f"{path}: the array entries {missing} listed in the header are missing"
        raise ValueError(msg)
    extra = sorted(set(arrays) - set(listing))
    if extra:
        msg = f"{path}: unexpected entries {extra} that the header does not list"
        raise ValueError(msg)
    for key, meta in listing.items():
        a = arrays[key]
        if not isinstance(meta, dict) or meta.get("dtype") != a.dtype.str or \
                meta.get("shape") != list(a.shape):
            msg = (f"{path}: entry {key!r} is {a.dtype.str} {list(a.shape)}, but the header says "
                   f"{meta!r}")
            raise ValueError(msg)


def _decode(value: Any, arrays: Mapping[str, np.ndarray], path: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            key = value[_ARRAY]
            if not isinstance(key, str) or key not in arrays:
                msg = f"{path}: the header refers to an array entry {key!r} that does not exist"
                raise ValueError(msg)
            return arrays[key]
        if set(value) == {_TUPLE} and isinstance(value[_TUPLE], list):
            return tuple(_decode(v, arrays, path) for v in value[_TUPLE])
        return {k: _decode(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, path) for v in value]
    return value


def _build_layer(path: str, i: int, entry: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 known: Mapping[str, type], be: Backend) -> Any:
    where = f"{path}: layer {i}"
    summary = _decode(entry.get("summary"), arrays, path)
    if not isinstance(summary, dict) or not isinstance(summary.get("hyperparameters"), dict):
        msg = f"{where}: the summary is missing or malformed"
        raise ValueError(msg)
    hp = summary["hyperparameters"]
    name = entry.get("class")
    cls = known.get(name) if isinstance(name, str) else None
    if cls is None or not issubclass(cls, LayerBase):
        msg = (f"{where}: unknown layer class {name!r}; a checkpoint can name only "
               f"{', '.join(sorted(k for k, c in known.items() if issubclass(c, LayerBase)))} "
               f"(or classes registered with anyml.checkpoint.register_layer)")
        raise ValueError(msg)
    try:
        layer: Any = cls(**_constructor_args(cls, hp, skip=1), backend=be)
        for wrapper in hp.get("wrappers", []):
            wname = wrapper.get("wrapper") if isinstance(wrapper, dict) else None
            wcls = known.get(wname) if isinstance(wname, str) else None
            if wcls is None or not issubclass(wcls, WrapperBase):
                msg = f"unknown wrapper class {wname!r}"
                raise ValueError(msg)
            layer = wcls(layer, **_constructor_args(wcls, wrapper, skip=2))
        layer.set_params(summary)  # restores the optimizer's step count and scheduler state
        if "optimizer_step" in entry:  # a version 1 file kept the step count beside the summary
            layer.optimizer.cur_step = int(entry["optimizer_step"])
        layer.train(bool(entry.get("training", True)))
        if not entry.get("trainable", True):
            layer.freeze()
    except (TypeError, ValueError, KeyError) as exc:
        msg = f"{where} ({name}): cannot rebuild it from the checkpoint: {exc}"
        raise ValueError(msg) from exc
    return layer


def _constructor_args(cls: type, config: Mapping[str, Any], skip: int) -> dict[str, Any]:
    """The entries of ``config`` that ``cls``'s constructor takes by name (skipping ``self`` and, for
    a wrapper, the wrapped layer); the optimizer is set later by ``set_params``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[skip:]  # type: ignore[misc]
    args = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("backend", "optimizer"):
            continue
        if p.name in config:
            args[p.name] = config[p.name]
        elif p.default is p.empty:
            msg = f"{cls.__name__}: the checkpoint has no value for the argument {p.name!r}"
            raise ValueError(msg)
    return args
