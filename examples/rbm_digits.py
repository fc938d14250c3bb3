"""A restricted Boltzmann machine learns binarized 8x8 digits without labels: what its hidden units
are good for, measured against plain pixels.

The RBM is trained by contrastive divergence (CD-1) in minibatches drawn from the backend's seeded
generator; each epoch prints the reconstruction error (one Gibbs step, visible probabilities) on the
training and test images and their mean free energies. Then two softmax classifiers, trained the same
way, one on the RBM's hidden probabilities (the RBM frozen) and one on the raw pixels, are scored on
the test images and on the same images with 15% of their pixels flipped, and the RBM's Gibbs chain
is run on the corrupted images to see how much of the noise it removes (the PNG shows test digits,
the noisy ones and the reconstructions, with the fraction of wrong pixels).

An honest summary of what it prints with the defaults (NumPy, seed 0): the RBM features do **not**
beat the raw pixels for this linear classifier, on clean digits (92.5% against 93.3%) nor on noisy
ones (62.8% against 63.6%): a softmax on 64 pixels is already strong on these tiny images, and 64
binary-ish features learnt without labels keep no more than the pixels do. What the RBM does learn is
a model of the digits: its chain repairs part of the corruption (15.0% of the pixels wrong after
flipping, 13.4% after 5 Gibbs steps). Use it as a generative model or a pretraining step, not as a
drop-in feature extractor for small, clean images.

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


def plot_digits(rows: list[np.ndarray], labels: list[str], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no picture ({install_hint('examples')})")
        return None
    n = rows[0].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9 + 1.6, len(rows) * 1.0 + 1.0))
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == len(rows) - 1:
                ax.set_xlabel(f"#{c + 1}")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.supxlabel("test image")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def softmax_accuracy(be: anyml.Backend, train: Any, y_train: np.ndarray,
                     tests: dict[str, Any], y_test: np.ndarray, seed: int) -> dict[str, float]:
    """Train a softmax layer on ``train`` (same settings for every feature set); test accuracies."""
    be.seed(seed)
    model = Sequential([FullyConnected(10, backend=be), Softmax(backend=be)],
                       loss="CrossEntropy(reduction='mean')", optimizer="Adam(lr=0.01)")
    model.fit(train, y_train, epochs=30, batch_size=32, verbose=False)
    return {name: model.evaluate(X, y_test)["accuracy"] for name, X in tests.items()}


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

    # what the features are good for: a softmax on them against a softmax on the pixels, scored on
    # the clean test images and on the same images with 15% of their pixels flipped
    noise = np.random.default_rng(args.seed).random(X_test.shape) < 0.15
    X_noisy = np.where(noise, 1.0 - X_test, X_test)
    Xno = be.asarray(X_noisy)
    feats = {"clean": rbm.forward(Xte, retain_derived=False),
             "noisy": rbm.forward(Xno, retain_derived=False)}
    rbm_acc = softmax_accuracy(be, rbm.forward(Xtr, retain_derived=False), y_train, feats, y_test,
                               args.seed)
    pix_acc = softmax_accuracy(be, Xtr, y_train, {"clean": Xte, "noisy": Xno}, y_test, args.seed)
    print(f"softmax test accuracy      clean    15% flipped\n"
          f"  on the 64 pixels        {pix_acc['clean']:6.2%}   {pix_acc['noisy']:6.2%}\n"
          f"  on {args.hidden:3d} RBM features    {rbm_acc['clean']:6.2%}   {rbm_acc['noisy']:6.2%}")
    cleaned_all = anyml.to_numpy(rbm.reconstruct(Xno, n_steps=args.gibbs, return_prob=True))
    wrong_noisy = float(np.mean(X_noisy != X_test))
    wrong_cleaned = float(np.mean((cleaned_all > 0.5) != (X_test > 0.5)))
    print(f"denoising: {wrong_noisy:.1%} of the test pixels wrong after flipping, {wrong_cleaned:.1%} "
          f"after {args.gibbs} Gibbs steps of the RBM")
    accuracy = rbm_acc["clean"]

    checkpoint = out / "rbm_digits.safetensors"
    save(rbm, checkpoint)
    print(f"checkpoint: {checkpoint}")
    picture = plot_digits([X_test[:10], X_noisy[:10], cleaned_all[:10]],
                          ["test", f"15% flipped\n({wrong_noisy:.0%} wrong)",
                           f"RBM, {args.gibbs} Gibbs steps\n({wrong_cleaned:.0%} wrong)"],
                          out / "rbm_digits.png",
                          f"RBM ({args.hidden} hidden units) denoising binarized test digits")
    if picture is not None:
        print(f"reconstructions: {picture}")
    return {"accuracy": accuracy, "rbm_accuracy": rbm_acc, "pixel_accuracy": pix_acc,
            "wrong_pixels": {"noisy": wrong_noisy, "cleaned": wrong_cleaned},
            "checkpoint": checkpoint, "plot": picture, "seconds": seconds,
            "reconstruction_error": reconstruction_error(rbm, Xte)}


if __name__ == "__main__":
    main()
