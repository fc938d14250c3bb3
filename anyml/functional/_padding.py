"""Padding and output-size arithmetic shared by the convolution and pooling kernels and layers.

Everything here works on plain Python integers except :func:`pad2d`, which builds a padded copy of an
array with the Array API. Conventions (channels last):

* a 2-D padding is always resolved to ``(top, bottom, left, right)``;
* ``dilation`` counts the zeros inserted between kernel taps, so a kernel of size ``k`` covers
  ``k * (dilation + 1) - dilation`` input positions (its *effective* size);
* a strided window ``i`` starts at ``i * stride`` in the padded input, and the output has
  ``floor((n + pad_total - k_eff) / stride) + 1`` positions;
* ``"same"`` and ``"causal"`` follow numpy-ml: the output keeps the input's ``n`` positions at every
  stride (see :func:`same_pads`), where Keras and TensorFlow give ``ceil(n / stride)``.

The validators (:func:`as_pair`, :func:`as_count`, :func:`pair_or_int`, :func:`check_pad_spec`) raise
a ValueError whose message starts with the name of the layer or function that called them.
"""

from __future__ import annotations

import math
from typing import Any

from anyml._validate import is_integer, non_negative_int, positive_int
from anyml.backend import Array

Pad4 = tuple[int, int, int, int]

__all__ = [
    "as_count",
    "as_pair",
    "check_pad_spec",
    "conv_out_size",
    "effective_kernel",
    "pad2d",
    "pair_or_int",
    "resolve_pad1d",
    "resolve_pad2d",
    "same_pads",
]



def as_pair(value: Any, name: str, owner: str, *, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as ``(rows, cols)``, each at least ``minimum``.

    Raises
    ------
    ValueError
        Naming ``owner`` and ``name``, if a value is not an integer or is below ``minimum``.
    """
    items = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(items) != 2 or not all(is_integer(v) and int(v) >= minimum for v in items):
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        msg = f"{owner}: {name} must be a {kind} integer or a pair of them, got {value!r}"
        raise ValueError(msg)
    return int(items[0]), int(items[1])


def pair_or_int(value: Any, name: str, owner: str) -> int | tuple[int, int]:
    """:func:`as_pair`, but an int stays an int: a pair is kept as a tuple (JSON lists come back as
    tuples), so a hyperparameter keeps the form it was given in."""
    pair = as_pair(value, name, owner)
    return pair if isinstance(value, tuple | list) else pair[0]


def as_count(value: Any, name: str, owner: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum`` (1 or 0).

    Raises
    ------
    ValueError
        Naming ``owner`` and ``name``, if ``value`` is not an integer (a bool is not) or is below
        ``minimum``.
    """
    check = positive_int if minimum == 1 else non_negative_int
    return check(owner, name, value)


def effective_kernel(k: int, dilation: int) -> int:
    """How many input positions a kernel of ``k`` taps with ``dilation`` zeros between taps spans."""
    return k * (dilation + 1) - dilation


def conv_out_size(n: int, k_eff: int, stride: int, pad_total: int) -> int:
    """``floor((n + pad_total - k_eff) / stride) + 1``: the number of valid strided windows."""
    return (n + pad_total - k_eff) // stride + 1


def check_pad_spec(pad: Any, owner: str, *, ndim: int = 2,
                   strings: tuple[str, ...] = ("same",)) -> Any:
    """Validate a padding specification before any work; return it in canonical form.

    ``ndim == 2`` accepts an int, a pair ``(rows, cols)``, a 4-tuple ``(top, bottom, left, right)``
    or one of ``strings``; ``ndim == 1`` accepts an int, a pair ``(left, right)`` or one of
    ``strings``. Integers must be non-negative. Tuples (and JSON lists) come back as tuples of ints.
    """
    if isinstance(pad, str):
        if pad not in strings:
            msg = f"{owner}: unknown pad {pad!r}; expected a non-negative int, a tuple or one of {strings}"
            raise ValueError(msg)
        return pad
    sizes = (2,) if ndim == 1 else (2, 4)
    if is_integer(pad):
        items: tuple[Any, ...] = (pad,)
    elif isinstance(pad, tuple | list) and len(pad) in sizes:
        items = tuple(pad)
    else:
        shape = "(left, right)" if ndim == 1 else "(rows, cols) or (top, bottom, left, right)"
        msg = f"{owner}: pad must be a non-negative int, a tuple {shape} or one of {strings}, got {pad!r}"
        raise ValueError(msg)
    if not all(is_integer(v) and int(v) >= 0 for v in items):
        msg = f"{owner}: pad values must be non-negative integers, got {pad!r}"
        raise ValueError(msg)
    return int(items[0]) if len(items) == 1 else tuple(int(v) for v in items)


def same_pads(n: int, k_eff: int, stride: int, rule: str = "numpy-ml") -> tuple[int, int]:
    r"""The ``(before, after)`` zero padding of ``"same"`` along an axis of ``n`` positions.

    With ``rule="numpy-ml"`` (the convolutions) the output keeps all ``n`` positions at every stride:
    the pads add up to

    .. math:: P = (s - 1)(n - 1) + k_\text{eff} - 1,

    the least total for which ``floor((n + P - k_eff) / s) + 1 = n``. With ``rule="ceil"`` (Keras,
    TensorFlow and :class:`~anyml.layers.pool.Pool2D`) the output has ``ceil(n / s)`` positions and
    :math:`P = \max((\lceil n/s \rceil - 1) s + k_\text{eff} - n, 0)`. The two agree at stride 1.
    Either way ``P`` is split as evenly as possible, an odd position going after (bottom/right).
    """
    if rule == "ceil":
        total = max((math.ceil(n / stride) - 1) * stride + k_eff - n, 0)
    else:
        total = (stride - 1) * (n - 1) + k_eff - 1
    return total // 2, total - total // 2


def explicit_pads(pad: int | tuple[int, ...]) -> Pad4:
    """A checked numeric pad as ``(top, bottom, left, right)``: an int pads every side, a pair
    ``(rows, cols)`` pads both sides of each axis, a 4-tuple is taken as it is."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[0], pad[1], pad[1])
    return (pad[0], pad[1], pad[2], pad[3])


def resolve_pad2d(pad: Any, in_shape: tuple[int, int], kernel: tuple[int, int],
                  stride: tuple[int, int], dilation: int = 0, owner: str = "conv2d",
                  strings: tuple[str, ...] = ("same",), same_rule: str = "numpy-ml") -> Pad4:
    """Resolve a padding specification for an input of ``in_shape = (rows, cols)``.

    ``"same"`` pads as :func:`same_pads` says for ``same_rule``: by default the output keeps the
    input's size at every stride (numpy-ml), with an odd pixel at the bottom/right. ``"causal"``
    (1-D convolutions, on the column axis) puts the whole of that ``"same"`` total on the left, so
    the output keeps the input's length and output ``t`` sees no input after ``t``: its last tap
    reads input ``t s - P + k_eff - 1 = t - (s - 1)(n - 1 - t) <= t``.

    Raises
    ------
    ValueError
        If the dilated kernel is larger than the padded input along an axis.
    """
    pad = check_pad_spec(pad, owner, strings=strings)
    keff = (effective_kernel(kernel[0], dilation), effective_kernel(kernel[1], dilation))
    if pad == "same":
        pads: Pad4 = (*same_pads(in_shape[0], keff[0], stride[0], same_rule),
                      *same_pads(in_shape[1], keff[1], stride[1], same_rule))
    elif pad == "causal":
        pads = (0, 0, sum(same_pads(in_shape[1], keff[1], stride[1])), 0)
    else:
        pads = explicit_pads(pad)
    for axis, name in ((0, "rows"), (1, "cols")):
        padded = in_shape[axis] + pads[2 * axis] + pads[2 * axis + 1]
        if keff[axis] > padded:
            msg = (f"{owner}: the kernel spans {keff[axis]} {name} (with dilation), more than the "
                   f"{padded} {name} of the padded input (input {in_shape[axis]}, pad "
                   f"{pads[2 * axis]}+{pads[2 * axis + 1]})")
            raise ValueError(msg)
    return pads


def resolve_pad1d(pad: Any, length: int, kernel: int, stride: int, dilation: int = 0,
                  owner: str = "conv1d") -> tuple[int, int]:
    """The ``(left, right)`` zeros of a 1-D convolution's ``pad`` for a sequence of ``length``.

    The one place where a 1-D padding is resolved (the layer and the kernel both ask it, through
    :func:`anyml.functional._memo.memo`): an int pads both ends, a pair is ``(left, right)``,
    ``"same"`` and ``"causal"`` are those of :func:`resolve_pad2d` on a one-row image.

    Raises
    ------
    ValueError
        Naming ``owner``: a bad specification, or a dilated kernel longer than the padded input.
    """
    pad = check_pad_spec(pad, owner, ndim=1, strings=("same", "causal"))
    spec = pad if isinstance(pad, str) else (0, 0, pad, pad) if isinstance(pad, int) else (0, 0, *pad)
    pads = resolve_pad2d(spec, (1, length), (1, kernel), (1, stride), dilation, owner=owner,
                         strings=("same", "causal"))
    return pads[2], pads[3]


def pad2d(X: Array, pads: Pad4, xp: Any, value: float = 0.0) -> Array:
    """``X`` of shape ``(n_ex, rows, cols, ch)`` surrounded by ``pads`` filled with ``value``.

    Returns ``X`` itself when every pad is zero.
    """
    top, bottom, left, right = pads
    if not any(pads):
        return X
    n, rows, cols, ch = X.shape
    shape = (n, rows + top + bottom, cols + left + right, ch)
    if value == 0.0:
        out = xp.zeros(shape, dtype=X.dtype, device=X.device)
    else:
        out = xp.full(shape, value, dtype=X.dtype, device=X.device)
    out[:, top:top + rows, left:left + cols, :] = X
    return out
