"""The geometry memo: equal-looking arguments of other types and errors are never served from it."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.functional import _memo
from anyml.functional.conv import conv2d_forward
from anyml.functional.pool import pool2d_forward


def test_spec_key_tells_apart_values_that_compare_equal():
    keys = {_memo.spec_key(v) for v in (1, True, 1.0, np.int64(1), (1, 1), [1, 1], (True, 1))}
    assert len(keys) == 7


def test_unhashable_arguments_are_resolved_without_the_memo():
    calls = []

    def fn(value):
        calls.append(value)
        return len(value)

    assert _memo.memo(fn, [{"a": 1}]) == 1
    assert _memo.memo(fn, [{"a": 1}]) == 1
    assert len(calls) == 2


def test_results_are_remembered_and_errors_are_not():
    calls = []

    def fn(value):
        calls.append(value)
        if value < 0:
            raise ValueError("negative")
        return value * 2

    assert _memo.memo(fn, 3) == 6
    assert _memo.memo(fn, 3) == 6
    assert calls == [3]
    for _ in range(2):
        with pytest.raises(ValueError, match="negative"):
            _memo.memo(fn, -1)
    assert calls == [3, -1, -1]


def test_a_bool_stride_is_refused_after_an_int_stride_was_remembered():
    X = np.ones((1, 5, 5, 2), dtype=np.float32)
    W = np.ones((3, 3, 2, 4), dtype=np.float32)
    conv2d_forward(X, W, pad=1, stride=1)
    with pytest.raises(ValueError, match="stride"):
        conv2d_forward(X, W, pad=1, stride=True)
    pool2d_forward(X, 2, stride=2)
    with pytest.raises(ValueError, match="stride"):
        pool2d_forward(X, 2, stride=np.float64(2.0))


def test_the_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(_memo, "MAX_ENTRIES", 4)

    def fn(value):
        return value

    for i in range(10):
        assert _memo.memo(fn, i) == i
    assert len(_memo._MEMOS[fn]) <= 4
