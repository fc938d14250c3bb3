"""Checkpoints: save a layer or a :class:`~anyml.model.Sequential` to one file and load it back.

The format
----------
A checkpoint is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: a small JSON header
that lists every array (name, dtype, shape, byte range), then the arrays' bytes. PyTorch, JAX and
other tools read the weights directly. It holds

- ``a0``, ``a1``, ...: the arrays, as host copies in their own dtype: every parameter (trainable or
  state such as batch-norm running statistics) and every optimizer state array;
- in the string metadata, ``"anyml"``: a JSON text with the format name and version, what the file
  holds (one layer or a ``Sequential``), the loss, and for each layer its class name, its
  :meth:`~anyml.layers.base.LayerBase.summary` with every array replaced by the name of its entry
  (the summary carries the optimizer's state: its arrays, its step count and its learning-rate
  scheduler's state), and its ``training``/``trainable`` flags; plus each array's dtype and shape;
- in the metadata, ``"sha256"``: the SHA-256 digest of that JSON text and of every array's name,
  dtype, shape and bytes, in hex.

Loading checks everything before it builds anything, and every problem with the file raises one
exception type, :class:`CheckpointError` (a ``ValueError``), whose message names the file and what is
wrong:

- the safetensors parser (small, fuzzed, bounded header, no code execution) checks that the byte
  ranges tile the file, so no array can claim more memory than the file holds;
- the JSON text is at most :data:`MAX_HEADER_BYTES` long and :data:`MAX_JSON_DEPTH` levels deep;
- the arrays must be exactly those the JSON lists, with those dtypes and shapes, and the digest
  must match;
- each layer is rebuilt from its class *name* looked up in an explicit registry of anyml's layer
  and wrapper classes (:func:`register_layer` adds your own); nothing read from the file is ever
  imported, evaluated or executed. The constructor checks the settings without creating parameters
  (so a setting such as a huge ``vocab_size`` allocates nothing), then ``set_params`` checks and
  loads the parameters (their shapes must be those the settings give, their values finite floats)
  and the optimizer state (names, entries and shapes); every parameter the settings call for must
  be in the file.

The digest detects corruption and accidental edits; it is not a signature (whoever can write the
file can also rewrite the digest). A checkpoint from an untrusted source cannot run code or exhaust
memory when loaded, but it can hold wrong or malicious *weights*: load models only from sources you
trust to give you a correct model.

Not saved: retained forward passes and accumulated gradients (a loaded model starts with zero
gradients).

Versions: version 3 is the safetensors file. Versions 1 and 2 were NumPy ``.npz`` archives (the same
JSON in an entry ``__anyml__``, the digest in ``__sha256__``) and still load, with the same checks
(their members must be stored uncompressed, as anyml wrote them, and no array may claim more bytes
than its member holds); version 1 files kept the optimizer's step count beside the summary and no
scheduler state, so their schedulers start afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from anyml.backend import Backend, resolve_backend
from anyml.layers.base import LayerBase, deferred_parameters
from anyml.wrappers import WrapperBase

__all__ = ["FORMAT_VERSION", "CheckpointError", "layer_classes", "load", "register_layer",
           "register_model", "save"]

FORMAT_NAME = "anyml-checkpoint"
#: The version written; files of a newer version are refused.
FORMAT_VERSION = 3
#: The largest JSON text a checkpoint may hold (bytes).
MAX_HEADER_BYTES = 64 * 2**20
#: The deepest nesting of that JSON text.
MAX_JSON_DEPTH = 64
_HEADER = "__anyml__"
_DIGEST = "__sha256__"
_META_HEADER, _META_DIGEST = "anyml", "sha256"


class CheckpointError(ValueError):
    """A file that :func:`load` cannot take: not a checkpoint, truncated, corrupted, modified after it
    was saved, or holding something a model cannot be built from. The message names the file and
    what is wrong. A ``ValueError``, so ``except ValueError`` catches it too."""
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


#: The model classes a checkpoint may hold, by the name it records (``"Sequential"``). Each model
#: module registers its class (:func:`register_model`), so that imports run one way: the models
#: import this module, never the reverse.
_models: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Let checkpoints hold models of ``cls``; returns ``cls`` (usable as a decorator).

    A model has ``layers`` (a list of layers) and ``loss`` (``None`` or a loss whose ``str`` names
    it), and is rebuilt as ``cls(layers, loss=..., backend=...)``.
    """
    _models[cls.__name__] = cls
    return cls


def _model_kind(obj: Any) -> str | None:
    """The name under which the registered model class of ``obj`` is saved, if any."""
    for name, cls in _models.items():
        if isinstance(obj, cls):
            return name
    return None


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
def save(obj: Any, path: str | PathLike[str], *, metadata: Mapping[str, Any] | None = None) -> None:
    """Write a layer, a wrapped layer or a :class:`~anyml.model.Sequential` to ``path``.

    The file is a safetensors file (see the module docstring), written exactly at ``path`` (no
    suffix is added; ``.safetensors`` is customary), through a temporary file in the same folder, so
    an interrupted save never leaves a half-written checkpoint. ``metadata`` (JSON data, such as the
    training position that :meth:`Sequential.fit <anyml.model.Sequential.fit>` records) goes into
    the header, covered by the digest, and comes back as the ``checkpoint_metadata`` attribute of
    what :func:`load` returns (``None`` when there was none).

    Raises
    ------
    TypeError
        For another kind of object, a layer class :func:`load` could not find, or a hyperparameter
        that is not JSON data.
    """
    model_kind = _model_kind(obj)
    if model_kind is not None:
        layers, kind = obj.layers, model_kind
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
    if metadata is not None:
        header["metadata"] = dict(metadata)
    text = json.dumps(header, sort_keys=True)
    metadata = {_META_HEADER: text, _META_DIGEST: _digest(text, arrays)}
    from safetensors.numpy import save as to_bytes

    payload = to_bytes(arrays, metadata=metadata)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".anyml-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
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
        if value.dtype.kind not in "biuf":
            msg = f"save: {where} holds a {value.dtype} array, which a checkpoint cannot store"
            raise TypeError(msg)
        key = f"a{len(arrays)}"
        arrays[key] = np.array(value, order="C", copy=True)  # ascontiguousarray would make 0-d 1-d
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
        The file: a safetensors checkpoint, or an ``.npz`` one of format versions 1 and 2.
    backend : str or Backend, optional
        Where to put the parameters; default the current backend. Float arrays take the backend's
        dtype, so a float64 checkpoint loads exactly into a float64 backend of any library.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    CheckpointError
        (a ``ValueError``) If the file is not a checkpoint, is truncated, corrupted or modified (a
        changed array, header or digest, a missing or extra entry), names a layer class that is not
        registered, or holds settings, parameters or optimizer state the layer refuses. Nothing is
        built, and nothing large is allocated, before the file has passed the checks of the module
        docstring. The message names the file and what is wrong.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        text, digest, arrays = _read_npz(path)
    else:
        text, digest, arrays = _read_safetensors(path)
    header = _parse_header(path, text)
    _check_arrays(path, header, arrays)
    if digest != _digest(text, arrays):
        msg = (f"{path}: the SHA-256 digest does not match the contents: the file was modified or "
               f"corrupted after it was saved")
        raise CheckpointError(msg)
    be = resolve_backend(backend)
    known = layer_classes()
    with be.activate():
        layers = [_build_layer(path, i, entry, arrays, known, be)
                  for i, entry in enumerate(header["layers"])]
    if header["kind"] == "layer":
        obj = layers[0]
    else:
        kind = header["kind"]
        try:
            obj = _models[kind](layers, loss=header["loss"], backend=be)
        except (TypeError, ValueError, KeyError) as exc:
            msg = f"{path}: cannot rebuild the {kind}: {exc}"
            raise CheckpointError(msg) from exc
    obj.checkpoint_metadata = header.get("metadata")
    return obj


def _read_safetensors(path: str) -> tuple[str, str, dict[str, np.ndarray]]:
    """The JSON text, the digest and the arrays of a safetensors checkpoint.

    The safetensors parser refuses a header over 100 MB and byte ranges that do not tile the file,
    so each array is at most as large as the file; the listing is read before any array."""
    from safetensors import safe_open

    size = os.path.getsize(path)
    if size < 8:
        msg = f"{path}: not an anyml checkpoint (a file of {size} bytes)"
        raise CheckpointError(msg)
    with open(path, "rb") as f:
        (n_header,) = struct.unpack("<Q", f.read(8))
    if n_header > min(size - 8, MAX_HEADER_BYTES + 2**20):
        msg = (f"{path}: not an anyml checkpoint (its first 8 bytes claim a header of {n_header} "
               f"bytes in a file of {size})")
        raise CheckpointError(msg)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            text, digest = metadata.get(_META_HEADER), metadata.get(_META_DIGEST)
            if not isinstance(text, str) or not isinstance(digest, str):
                msg = (f"{path}: not an anyml checkpoint (a safetensors file without the "
                       f"{_META_HEADER!r} and {_META_DIGEST!r} metadata)")
                raise CheckpointError(msg)
            arrays = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
    except CheckpointError:
        raise
    except Exception as exc:  # the parser's own errors, for any corrupt input
        msg = f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        raise CheckpointError(msg) from exc
    return text, digest, arrays


def _read_npz(path: str) -> tuple[str, str, dict[str, np.ndarray]]:
    """The JSON text, the digest and the arrays of a version 1 or 2 ``.npz`` checkpoint.

    Every member must be a stored (uncompressed) ``.npy`` whose header claims no more bytes than the
    member holds, checked before NumPy reads it; any error of the zip or ``.npy`` readers on a
    corrupt file becomes a :class:`CheckpointError`."""
    entries: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if not name.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
                    msg = (f"{path}: not an anyml checkpoint (the archive member {name!r} is not a "
                           f"stored .npy array)")
                    raise CheckpointError(msg)
                with archive.open(info) as member:
                    version = npy_format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        msg = f"{path}: the entry {name[:-4]!r} has .npy version {version}"
                        raise CheckpointError(msg)
                    read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                                   else npy_format.read_array_header_2_0)
                    shape, _, dtype = read_header(member, max_header_size=10_000)
                    if dtype.hasobject:
                        msg = f"{path}: the entry {name[:-4]!r} is an object array"
                        raise CheckpointError(msg)
                    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if claimed > info.file_size:
                        msg = (f"{path}: the entry {name[:-4]!r} claims {claimed} bytes but its "
                               f"member holds {info.file_size}: the file is damaged")
                        raise CheckpointError(msg)
            with np.load(path, allow_pickle=False) as loaded:
                for name in loaded.files:
                    entries[name] = loaded[name]
    except CheckpointError:
        raise
    except Exception as exc:  # zip and .npy readers raise many types on corrupt input
        msg = f"{path}: not an anyml checkpoint, or a damaged one ({type(exc).__name__}: {exc})"
        raise CheckpointError(msg) from exc
    texts = []
    for name in (_HEADER, _DIGEST):
        entry = entries.pop(name, None)
        if entry is None:
            msg = f"{path}: not an anyml checkpoint (the entry {name!r} is missing)"
            raise CheckpointError(msg)
        if entry.shape != () or entry.dtype.kind != "U":
            msg = f"{path}: the entry {name!r} should be a text, got {entry.dtype} {entry.shape}"
            raise CheckpointError(msg)
        texts.append(str(entry[()]))
    return texts[0], texts[1], entries


def _bounded_json(path: str, text: str) -> Any:
    """``json.loads(text)`` after checking its length and nesting depth (no deep recursion)."""
    if len(text) > MAX_HEADER_BYTES:
        msg = f"{path}: the header is {len(text)} characters long, more than {MAX_HEADER_BYTES}"
        raise CheckpointError(msg)
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    msg = (f"{path}: the header is nested more than {MAX_JSON_DEPTH} levels deep; "
                           f"anyml never writes such a file")
                    raise CheckpointError(msg)
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        msg = f"{path}: the header is not valid JSON ({exc})"
        raise CheckpointError(msg) from exc


def _parse_header(path: str, text: str) -> dict[str, Any]:
    header = _bounded_json(path, text)
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        msg = f"{path}: not an anyml checkpoint (the header names no format {FORMAT_NAME!r})"
        raise CheckpointError(msg)
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or \
            not 1 <= version <= FORMAT_VERSION:
        msg = (f"{path}: checkpoint format version {version!r} is not supported (this anyml reads "
               f"versions 1 to {FORMAT_VERSION})")
        raise CheckpointError(msg)
    layers, listing = header.get("layers"), header.get("arrays")
    if (header.get("kind") not in ("layer", "Sequential") or not isinstance(layers, list)
            or not layers or not all(isinstance(e, dict) for e in layers)
            or (header["kind"] == "layer" and len(layers) != 1)
            or not isinstance(listing, dict)
            or not (header.get("loss") is None or isinstance(header.get("loss"), str))):
        msg = (f"{path}: the header is malformed (kind, layers, arrays or loss missing or of a "
               f"wrong type)")
        raise CheckpointError(msg)
    for i, entry in enumerate(layers):
        if not isinstance(entry.get("class"), str) or not isinstance(entry.get("summary"), dict) \
                or not isinstance(entry.get("training", True), bool) \
                or not isinstance(entry.get("trainable", True), bool):
            msg = (f"{path}: layer {i} of the header is malformed (class, summary, training or "
                   f"trainable missing or of a wrong type)")
            raise CheckpointError(msg)
    return header


def _check_arrays(path: str, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    listing = header["arrays"]
    missing = sorted(set(listing) - set(arrays))
    if missing:
        msg = f"{path}: the array entries {missing[:10]} listed in the header are missing"
        raise CheckpointError(msg)
    extra = sorted(set(arrays) - set(listing))
    if extra:
        msg = f"{path}: unexpected entries {extra[:10]} that the header does not list"
        raise CheckpointError(msg)
    for key, meta in listing.items():
        a = arrays[key]
        if not isinstance(meta, dict) or meta.get("dtype") != a.dtype.str or \
                meta.get("shape") != list(a.shape):
            msg = (f"{path}: entry {key!r} is {a.dtype.str} {list(a.shape)}, but the header says "
                   f"{str(meta)[:200]}")
            raise CheckpointError(msg)


def _decode(value: Any, arrays: Mapping[str, np.ndarray], path: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            key = value[_ARRAY]
            if not isinstance(key, str) or key not in arrays:
                msg = f"{path}: the header refers to an array entry {str(key)[:100]!r} that does not exist"
                raise CheckpointError(msg)
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
    summary = _decode(entry["summary"], arrays, path)
    if not isinstance(summary.get("hyperparameters"), dict):
        msg = f"{where}: the summary is missing or malformed"
        raise CheckpointError(msg)
    hp = summary["hyperparameters"]
    name = entry["class"]
    cls = known.get(name)
    if cls is None or not issubclass(cls, LayerBase):
        msg = (f"{where}: unknown layer class {name[:100]!r}; a checkpoint can name only "
               f"{', '.join(sorted(k for k, c in known.items() if issubclass(c, LayerBase)))} "
               f"(or classes registered with anyml.checkpoint.register_layer)")
        raise CheckpointError(msg)
    try:
        with deferred_parameters():  # the parameters come from the file, checked by set_params
            layer: Any = cls(**_constructor_args(cls, hp, skip=1), backend=be)
        wrappers = hp.get("wrappers", [])
        if not isinstance(wrappers, list):
            msg = "the wrappers entry is not a list"
            raise ValueError(msg)
        for wrapper in wrappers:
            wname = wrapper.get("wrapper") if isinstance(wrapper, dict) else None
            wcls = known.get(wname) if isinstance(wname, str) else None
            if wcls is None or not issubclass(wcls, WrapperBase):
                msg = f"unknown wrapper class {str(wname)[:100]!r}"
                raise ValueError(msg)
            layer = wcls(layer, **_constructor_args(wcls, wrapper, skip=2))
        layer.set_params(summary)  # restores the optimizer's step count and scheduler state
        if "optimizer_step" in entry:  # a version 1 file kept the step count beside the summary
            step = entry["optimizer_step"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                msg = f"optimizer_step must be a non-negative integer, got {step!r}"
                raise ValueError(msg)
            layer.optimizer.cur_step = step
        _check_complete(_innermost(layer))
        layer.train(bool(entry.get("training", True)))
        if not entry.get("trainable", True):
            layer.freeze()
    except Exception as exc:  # whatever the file's contents provoke is the file's fault
        msg = f"{where} ({name}): cannot rebuild it from the checkpoint: {exc}"
        raise CheckpointError(msg) from exc
    return layer


def _check_complete(layer: LayerBase) -> None:
    """A layer whose settings fix every parameter's shape must have all of them from the file (a
    layer saved before its first forward pass, with sizes still unknown, has none)."""
    shapes = layer._param_shapes()
    if any(None in shape for shape in shapes.values()):
        return
    missing = [key for key in shapes if key not in layer.parameters]
    if missing:
        msg = (f"the settings call for the parameter(s) {missing}, which the file does not hold "
               f"(a layer saved before its first forward pass has no sizes yet)")
        raise ValueError(msg)


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
