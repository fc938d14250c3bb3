"""A small convolutional network on scikit-learn's handwritten digits (8x8 images, 10 classes).

Two blocks of convolution (ReLU), batch normalization and max pooling, then two dense layers and a
softmax, trained with Adam on the cross-entropy. It prints the test accuracy, saves a checkpoint
(and checks that it loads back to the same accuracy) and plots the training curves.

    python examples/digits_cnn.py                      # NumPy, about 98% test accuracy
    python examples/digits_cnn.py --backend torch
    python examples/digits_cnn.py --backend array-api-strict --limit 300 --epochs 1

The data set ships with scikit-learn (no download); the split into 1437 training and 360 test
images is fixed (stratified, ``random_state=0``), ``--seed`` sets the weights and the batch order.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

import anyml
from anyml._dist import install_hint
from anyml.layers.conv import Conv2D
from anyml.layers.dense import FullyConnected
from anyml.layers.norm import BatchNorm2D
from anyml.layers.pool import Pool2D
from anyml.layers.shape import Flatten
from anyml.layers.softmax import Softmax
from anyml.model import Sequential


def load_data(limit: int | None = None) -> tuple[np.ndarray, ...]:
    """``(X_train, y_train, X_test, y_test)``: images as ``(n, 8, 8, 1)`` floats in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit(f"this example needs scikit-learn: {install_hint('examples')}")
    digits = load_digits()
    X = (digits.images / 16.0)[..., None]
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    if limit is not None:
        X_train, y_train = X_train[:limit], y_train[:limit]
        X_test, y_test = X_test[:limit], y_test[:limit]
    return X_train, y_train, X_test, y_test


def build_model(be: anyml.Backend, lr: float) -> Sequential:
    """conv(16) - BN - pool - conv(32) - BN - pool - dense(64) - dense(10) - softmax."""
    opt = f"Adam(lr={lr})"
    return Sequential([
        Conv2D(16, (3, 3), pad=1, act_fn="ReLU", optimizer=opt, backend=be),   # 8x8x16
        BatchNorm2D(optimizer=opt, backend=be),
        Pool2D((2, 2), stride=2, backend=be),                                  # 4x4x16
        Conv2D(32, (3, 3), pad=1, act_fn="ReLU", optimizer=opt, backend=be),   # 4x4x32
        BatchNorm2D(optimizer=opt, backend=be),
        Pool2D((2, 2), stride=2, backend=be),                                  # 2x2x32
        Flatten(backend=be),
        FullyConnected(64, act_fn="ReLU", init="he_uniform", optimizer=opt, backend=be),
        FullyConnected(10, optimizer=opt, backend=be),
        Softmax(backend=be),
    ], loss="CrossEntropy(reduction='mean')")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate, save; return the results (used by the tests)."""
    p = _common.parser(__doc__.splitlines()[0], epochs=15, batch_size=32, lr=0.003)
    p.add_argument("--limit", type=int, default=None,
                   help="use at most this many training (and test) images, for a quick run")
    args = p.parse_args(argv)
    be = _common.backend_from(args)
    out = _common.out_dir(args)
    X_train, y_train, X_test, y_test = load_data(args.limit)
    print(f"data: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels")

    model = build_model(be, args.lr)
    start = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(X_test, y_test), verbose=not args.no_progress)
    seconds = time.perf_counter() - start
    print(f"{model.count_params()} parameters, trained in {seconds:.1f} s "
          f"({args.epochs * len(X_train) / seconds:.0f} examples/s)")
    scores = model.evaluate(X_test, y_test, batch_size=256)
    print(f"test accuracy: {scores['accuracy']:.2%} (loss {scores['loss']:.4f})")

    checkpoint = out / "digits_cnn.safetensors"
    model.save(checkpoint)
    reloaded = Sequential.load(checkpoint, backend=be).evaluate(X_test, y_test, batch_size=256)
    print(f"checkpoint: {checkpoint} (reloaded: test accuracy {reloaded['accuracy']:.2%})")
    plot = _common.plot_curves(history, out / "digits_cnn.png",
                               f"digits CNN on {be.name} ({be.dtype_name})")
    if plot is not None:
        print(f"training curves: {plot}")
    return {"accuracy": scores["accuracy"], "loss": scores["loss"], "history": history,
            "checkpoint": checkpoint, "plot": plot, "seconds": seconds,
            "reloaded_accuracy": reloaded["accuracy"]}


if __name__ == "__main__":
    main()
