"""Labels and targets given to the losses directly: out-of-range, float or text labels raise an error
about the labels (never a zero loss with no gradient, never a shape error)."""

from __future__ import annotations

import numpy as np
import pytest

from anyml.losses import CrossEntropy, SquaredError, VAELoss
from tests.bad_input._helpers import refused


def _probs(backend, n=4, c=3):
    return backend.asarray(np.full((n, c), 1.0 / c))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [-1, 0, 1, 2], [0, 1, 2, 10**9]])
@pytest.mark.parametrize("method", ["loss", "grad"])
def test_out_of_range_labels(backend, from_logits, labels, method):
    ce = CrossEntropy(from_logits=from_logits)
    y = backend.asarray(np.array(labels))
    refused("CrossEntropy", getattr(ce, method), y, _probs(backend), match=r"labels must lie in \[0, 3\)")


def test_check_can_be_skipped_where_labels_were_checked(backend):
    ce = CrossEntropy()
    y = backend.asarray(np.array([0, 1, 2, 0]))
    assert float(ce.loss(y, _probs(backend), check_labels=False)) > 0


@pytest.mark.parametrize("method", ["loss", "grad"])
def test_float_labels_shaped_like_indices(backend, method):
    y = backend.asarray(np.array([0.0, 1.0, 2.0, 0.0]))
    refused("CrossEntropy", getattr(CrossEntropy(), method), y, _probs(backend),
            match="labels y hold floats")


def test_text_and_bool_labels(backend):
    ce = CrossEntropy()
    refused("CrossEntropy", ce.loss, np.array(list("abca")), np.full((4, 3), 1 / 3))
    y = backend.asarray(np.eye(3, dtype=bool)[[0, 1, 2, 0]])
    refused("CrossEntropy", ce.loss, y, _probs(backend))


@pytest.mark.parametrize("loss", [SquaredError(), CrossEntropy()])
def test_mismatched_shapes_name_the_loss(backend, loss):
    y = backend.asarray(np.zeros((4, 5), dtype=backend.dtype_name))
    refused(type(loss).__name__, loss.loss, y, _probs(backend))


def test_vae_loss_shapes(backend):
    y = backend.asarray(np.full((4, 3), 0.5, dtype=backend.dtype_name))
    t = backend.asarray(np.zeros((5, 2), dtype=backend.dtype_name))
    refused("VAELoss", VAELoss().loss, y, y, t, t)


@pytest.mark.parametrize("bad", [{"reduction": "avg"}, {"from_logits": "yes"}])
def test_settings(bad):
    refused("CrossEntropy", CrossEntropy, **bad)
