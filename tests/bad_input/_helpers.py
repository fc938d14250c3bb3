"""What every bad-input test asserts: the error type, and that the message names the owner.

``refused(owner, fn, *args)`` calls ``fn`` and requires a ``ValueError`` or ``TypeError`` (or a
subclass) whose message names ``owner`` and none of the array libraries' own broadcasting or indexing
messages; anything else (an ``IndexError``, ``KeyError``, ``RecursionError`` ... or no error at all)
fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

#: Phrases of NumPy, PyTorch and array-api-strict errors that mean a check of ours is missing.
LIBRARY_PHRASES = (
    "could not be broadcast",
    "operands could not",
    "The size of tensor",
    "must match the size of tensor",
    "cannot reshape array",
    "shape '[",
    "Cannot broadcast",
    "is out of bounds",
    "index out of range",
    "mat1 and mat2",
    "matmul: Input operand",
    "truth value of an array",
    "object has no attribute",
)


def refused(owner: str | tuple[str, ...], fn: Callable[..., Any], *args: Any,
            types: tuple[type[BaseException], ...] = (ValueError, TypeError),
            match: str | None = None, **kwargs: Any) -> BaseException:
    """Call ``fn(*args, **kwargs)`` and assert it raises one of ``types`` naming ``owner`` (or one
    of the names, when a tuple).

    Returns the exception, for further checks. ``match`` is a regular expression the message must
    contain as well.
    """
    try:
        fn(*args, **kwargs)
    except types as exc:
        return clear(owner, exc, match)
    except BaseException as exc:  # noqa: BLE001 - report what leaked
        pytest.fail(f"expected {' or '.join(t.__name__ for t in types)} naming {owner!r}, got "
                    f"{type(exc).__name__}: {exc}")
    pytest.fail(f"expected {' or '.join(t.__name__ for t in types)} naming {owner!r}, but nothing "
                f"was raised")


def clear(owner: str | tuple[str, ...], exc: BaseException, match: str | None = None) -> BaseException:
    """Assert that the message of ``exc`` names ``owner`` (or one of the names), holds no library
    message and matches ``match``; return ``exc``."""
    text = str(exc)
    owners = (owner,) if isinstance(owner, str) else owner
    assert any(o in text for o in owners), f"the message does not name {owner!r}: {text!r}"
    for phrase in LIBRARY_PHRASES:
        assert phrase not in text, f"a library's own message leaked: {text!r}"
    if match is not None:
        assert re.search(match, text), f"{match!r} not in {text!r}"
    return exc
