"""A restricted Boltzmann machine learns binarized 8x8 digits without labels; its hidden units then
serve as features for a softmax classifier.

The RBM is trained by contrastive divergence (CD-1) in minibatches drawn from the backend's seeded
generator; each epoch prints the reconstruction error (one Gibbs step, visible probabilities) on the
training and test images and their mean free energies. A dense softmax layer trained on the hidden
probabilities (the RBM frozen) then reports a test accuracy. It saves the RBM as a checkpoint and a
PNG with test digits, the same digits with 15% of their pixels flipped, and the RBM's
reconstructions of the noisy ones (``--gibbs`` steps of the chain).

    python examples/rbm_digits.py
    python examples/rbm_digits.py --backend torch --hidden 100
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from digits_cnn import load_data

import anyml
from anyml._dist import install_hint
from anyml.checkpoint import save
from anyml.layers.dense import FullyConnected
from anyml.layers.rbm import RBM
from anyml.layers.softmax import Softmax
from anyml.model import Sequential


def binarize(images: np.ndarray) -> np.ndarray:
    """``(n, 8, 8, 1)`` grey levels in [0, 1] -> ``(n, 64)`` zeros and ones."""
    return (images.reshape(len(images), -1) > 0.4).astype(np.float64)


def reconstruction_error(rbm: RBM, X: Any) -> float:
    """Mean squared difference between the images and their one-step reconstructions."""
    xp = rbm.xp
    diff = rbm.reconstruct(X, n_steps=1, return_prob=True) - X
    return float(xp.mean(diff * diff))


def plot_digits(rows: list[np.ndarray], labels: list[str], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no picture ({install_hint('examples')})")
        return None
    n = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train the RBM and the classifier on top; return the results (used by the tests)."""
    p = _common.parser(__doc__.splitlines()[0], epochs=60, batch_size=20, lr=0.01)
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the RBM")
    p.add_argument("--gibbs", type=int, default=5, help="Gibbs steps when denoising the picture")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images per split")
    args = p.parse_args(argv)
    be = _common.backend_from(args)
    out = _common.out_dir(args)
    images_train, y_train, images_test, y_test = load_data(args.limit)
    X_train, X_test = binarize(images_train), binarize(images_test)
    Xtr, Xte = be.asarray(X_train), be.asarray(X_test)
    print(f"data: {len(X_train)} training and {len(X_test)} test images, 64 binary pixels")

    rbm = RBM(args.hidden, K=1, optimizer=f"Adam(lr={args.lr})", backend=be)
    n = len(X_train)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = be.to_host(be.rng.permutation(n))
        for i in range(0, n, args.batch_size):
            rbm.CD_update(be.asarray(X_train[order[i:i + args.batch_size]]))
            rbm.update()
        if (epoch + 1) % max(1, args.epochs // 6) == 0 or epoch + 1 == args.epochs:
            f_train = float(be.xp.mean(rbm.free_energy(Xtr)))
            f_test = float(be.xp.mean(rbm.free_energy(Xte)))
            print(f"epoch {epoch + 1:3d}/{args.epochs}: reconstruction error train "
                  f"{reconstruction_error(rbm, Xtr):.4f} test {reconstruction_error(rbm, Xte):.4f};"
                  f" free energy train {f_train:.2f} test {f_test:.2f}")
    seconds = time.perf_counter() - start
    print(f"RBM trained in {seconds:.1f} s ({args.epochs * n / seconds:.0f} examples/s)")

    # the hidden probabilities as features for a softmax classifier
    features_train = rbm.forward(Xtr, retain_derived=False)
    features_test = rbm.forward(Xte, retain_derived=False)
    classifier = Sequential([FullyConnected(10, optimizer="Adam(lr=0.01)", backend=be),
                             Softmax(backend=be)], loss="CrossEntropy(reduction='mean')")
    classifier.fit(features_train, be.asarray(y_train), epochs=30, batch_size=32, verbose=False)
    accuracy = classifier.evaluate(features_test, be.asarray(y_test))["accuracy"]
    print(f"softmax on {args.hidden} RBM features: test accuracy {accuracy:.2%}")

    checkpoint = out / "rbm_digits.safetensors"
    save(rbm, checkpoint)
    print(f"checkpoint: {checkpoint}")
    shown = X_test[:10]
    noise = np.random.default_rng(args.seed).random(shown.shape) < 0.15
    noisy = np.where(noise, 1.0 - shown, shown)
    cleaned = anyml.to_numpy(rbm.reconstruct(be.asarray(noisy), n_steps=args.gibbs, return_prob=True))
    picture = plot_digits([shown, noisy, cleaned], ["test", "15% flipped", "RBM"],
                          out / "rbm_digits.png")
    if picture is not None:
        print(f"reconstructions: {picture}")
    return {"accuracy": accuracy, "checkpoint": checkpoint, "plot": picture, "seconds": seconds,
            "reconstruction_error": reconstruction_error(rbm, Xte)}


if __name__ == "__main__":
    main()
