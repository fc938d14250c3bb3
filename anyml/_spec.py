"""String specifications such as ``"Adam(lr=0.001)"``: formatting, safe parsing and registries.

Activations, initializers, optimizers and schedulers are :class:`Spec` objects. Each has a string form
``Name(key=value, ...)`` that parses back to an equal object. Parsing reads the text with :mod:`ast` and
accepts only a call of a registered name with keyword arguments whose values are literals or further
such calls; nothing in the text is ever executed.
"""

from __future__ import annotations

import ast
import difflib
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "Spec", "format_spec", "parse_spec"]

T = TypeVar("T", bound="Spec")


class Spec:
    """Base class of objects with a ``Name(key=value, ...)`` string form.

    Subclasses keep their constructor arguments as attributes of the same names and list those names
    in ``_spec_fields``; ``str``, ``==`` and :attr:`hyperparameters` follow from that.
    """

    _spec_fields: tuple[str, ...] = ()

    def spec_params(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this object."""
        return {name: getattr(self, name) for name in self._spec_fields}

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """``{"id": class name, **constructor arguments}``, nested specs as strings (JSON-friendly)."""
        params = {k: str(v) if isinstance(v, Spec) else v for k, v in self.spec_params().items()}
        return {"id": type(self).__name__, **params}

    def __str__(self) -> str:
        return format_spec(type(self).__name__, self.spec_params())

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.spec_params() == other.spec_params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(str(self))


def format_spec(name: str, params: Mapping[str, Any]) -> str:
    """``Name`` when there are no parameters, else ``Name(k=repr(v), ...)``; nested specs by ``str``."""
    if not params:
        return name
    parts = [f"{k}={v}" if isinstance(v, Spec) else f"{k}={v!r}" for k, v in params.items()]
    return f"{name}({', '.join(parts)})"


# CPython 3.11 before 3.11.8 counts the depth of its AST conversion per interpreter rather than per
# thread, so two threads parsing at once can fail with "AST constructor recursion depth mismatch".
_PARSE_LOCK = threading.Lock()
#: The longest spec string :func:`parse_spec` reads (anyml's own are under 200 characters).
MAX_SPEC_LENGTH = 1000
#: The deepest nesting of the parsed expression: calls, containers and operators, each one level.
MAX_SPEC_DEPTH = 24


def parse_spec(text: str, kind: str = "spec") -> tuple[str, dict[str, Any]]:
    """Split ``"Name(k=v, ...)"`` into ``("Name", {"k": v, ...})`` without executing anything.

    Values must be Python literals (numbers, strings, ``None``, booleans, tuples, lists). A nested call
    such as ``lr_scheduler=ConstantScheduler(lr=0.1)`` is returned as its own text, for the receiving
    constructor to parse with its registry.

    The text is bounded before it is parsed: at most :data:`MAX_SPEC_LENGTH` characters and
    :data:`MAX_SPEC_DEPTH` levels of nesting, so no input makes the parser recurse or allocate without
    limit. A keyword may appear once, and numbers must be finite.

    Raises
    ------
    TypeError
        If ``text`` is not a string.
    ValueError
        If the text is not of that form, too long or too deeply nested, repeats a keyword or holds
        an infinite or NaN number; the message quotes it (shortened when long).
    """
    if not isinstance(text, str):
        msg = f"cannot parse {kind}: expected a string, got {type(text).__name__}"
        raise TypeError(msg)
    if len(text) > MAX_SPEC_LENGTH:
        msg = (f"cannot parse {kind} {_short(text)}: it is {len(text)} characters long, more than the "
               f"{MAX_SPEC_LENGTH} a spec may have")
        raise ValueError(msg)
    try:
        with _PARSE_LOCK:
            node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        msg = f"cannot parse {kind} {_short(text)}: expected Name or Name(key=value, ...)"
        raise ValueError(msg) from exc
    depth = _depth(node)
    if depth > MAX_SPEC_DEPTH:
        msg = (f"cannot parse {kind} {_short(text)}: it is nested {depth} levels deep, more than the "
               f"{MAX_SPEC_DEPTH} a spec may have")
        raise ValueError(msg)
    if isinstance(node, ast.Name):
        return node.id, {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        msg = f"cannot parse {kind} {_short(text)}: expected Name or Name(key=value, ...)"
        raise ValueError(msg)
    if node.args:
        msg = f"cannot parse {kind} {_short(text)}: give the arguments as key=value"
        raise ValueError(msg)
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            msg = f"cannot parse {kind} {_short(text)}: '**' is not allowed"
            raise ValueError(msg)
        if kw.arg in kwargs:
            msg = f"cannot parse {kind} {_short(text)}: the keyword {kw.arg!r} is given twice"
            raise ValueError(msg)
        kwargs[kw.arg] = _literal(kw.value, text, kind)
    return node.func.id, kwargs


def _short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut in the middle when long."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return repr(text[:half]) + f" ... ({len(text)} characters) ... " + repr(text[-half:])


def _depth(root: ast.AST) -> int:
    """The depth of the syntax tree below ``root``, counted without recursion."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_SPEC_DEPTH:  # deeper than that is refused anyway
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _literal(node: ast.expr, text: str, kind: str) -> Any:
    if isinstance(node, ast.Call):
        return ast.unparse(node)
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        msg = f"cannot parse {kind} {_short(text)}: {_short(ast.unparse(node))} is not a literal value"
        raise ValueError(msg) from exc
    if not _finite(value):
        msg = f"cannot parse {kind} {_short(text)}: {_short(ast.unparse(node))} is not a finite number"
        raise ValueError(msg)
    return value


def _finite(value: Any) -> bool:
    """Whether every number in a literal (possibly a tuple, list, set or dict) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, complex):
        return math.isfinite(value.real) and math.isfinite(value.imag)
    if isinstance(value, tuple | list | set | frozenset):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(k) and _finite(v) for k, v in value.items())
    return True


def _normalize(name: str) -> str:
    return name.replace("_", "").replace(" ", "").replace("-", "").lower()


class Registry(Generic[T]):
    """Turns ``None``, a name, a spec string, a dict or an object into an object of one family.

    Parameters
    ----------
    kind : str
        What the family is called in error messages (``"activation"``, ``"optimizer"`` ...).
    base : type
        The family's base class; objects of it pass through :meth:`get`.
    """

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Callable[..., T]] = {}
        self._names: list[str] = []

    def register(self, cls: type[T], *aliases: str) -> type[T]:
        """Register ``cls`` under its class name and any aliases (matched ignoring case and ``_``)."""
        for name in (cls.__name__, *aliases):
            self._entries[_normalize(name)] = cls
        self._names.append(cls.__name__)
        return cls

    @property
    def names(self) -> list[str]:
        """The registered class names."""
        return list(self._names)

    def lookup(self, name: str) -> Callable[..., T]:
        """The constructor registered as ``name``; a ``ValueError`` lists the choices otherwise."""
        if not isinstance(name, str) or len(name) > MAX_SPEC_LENGTH:
            msg = f"unknown {self.kind} {_short(str(name))}; choose one of: {', '.join(self._names)}"
            raise ValueError(msg)
        try:
            return self._entries[_normalize(name)]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, self._names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        msg = f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self._names)}"
        raise ValueError(msg)

    def build(self, name: str, params: Mapping[str, Any]) -> T:
        """Construct ``name(**params)``, turning a bad argument into a clear ``ValueError``."""
        cls = self.lookup(name)
        try:
            return cls(**params)
        except TypeError as exc:
            msg = f"cannot build {self.kind} {name}({format_spec('', params)[1:-1] if params else ''}): {exc}"
            raise ValueError(msg) from exc

    def split(self, spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(name, params)`` of a spec string or dict, without building anything.

        A string may write the name with spaces or hyphens (``"leaky relu"``); a dict is
        ``{"id": name, **params}`` (what :attr:`Spec.hyperparameters` gives) or numpy-ml's optimizer
        summary ``{"hyperparameters": {...}, "cache": {...}}``.
        """
        if isinstance(spec, str):
            name, paren, rest = spec.partition("(")
            tidy = name.strip().replace(" ", "_").replace("-", "_") + paren + rest
            return parse_spec(tidy, self.kind)
        entry = dict(spec.get("hyperparameters", spec))
        name = entry.pop("id", None)
        if not isinstance(name, str):
            msg = f"a {self.kind} dict needs an 'id' naming the {self.kind}, got {dict(spec)!r}"
            raise ValueError(msg)
        return name, entry

    def get(self, spec: Any, default: Callable[[], T] | None = None) -> T:
        """Resolve ``spec``: ``None`` (the default), an object, a name or spec string, or a dict
        (see :meth:`split`).

        An object of another library whose class defines ``__str__`` (numpy-ml's ``ReLU()`` or
        ``Adam(lr=0.01)``) is accepted through that string when it parses as a spec of this family;
        any other object is a ``TypeError``.
        """
        if spec is None:
            if default is None:
                msg = f"expected a {self.kind}, got None"
                raise ValueError(msg)
            return default()
        if isinstance(spec, self.base):
            return spec
        if isinstance(spec, str | Mapping):
            return self.build(*self.split(spec))
        expected = (f"expected a {self.kind} as None, a string, a dict, a {self.base.__name__} or an "
                    f"object whose str() is a {self.kind} spec")
        got = f"{type(spec).__module__}.{type(spec).__qualname__}"
        text = _foreign_spec(spec)
        if text is None:
            msg = f"{expected}, got {got}"
            raise TypeError(msg)
        try:
            return self.build(*self.split(text))
        except ValueError as exc:
            msg = f"{expected}, got {got} whose str() is {text!r}: {exc}"
            raise TypeError(msg) from exc


#: Types whose str() is never read as a spec (plain data, not objects of a family).
_PLAIN_TYPES = (bool, int, float, complex, bytes, bytearray, list, tuple, set, frozenset, Mapping,
                type)


def _foreign_spec(obj: Any) -> str | None:
    """``str(obj)`` when ``obj``'s class defines its own ``__str__`` (as numpy-ml's activations,
    optimizers, schedulers and initializers do), else ``None``."""
    cls = type(obj)
    if isinstance(obj, _PLAIN_TYPES) or cls.__str__ is object.__str__:
        return None
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # an array: its str() is its values
        return None
    try:
        text = str(obj)
    except Exception:  # noqa: BLE001  # a broken __str__ is just not a spec
        return None
    return text if isinstance(text, str) else None
