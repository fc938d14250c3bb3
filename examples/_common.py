"""What the example scripts share: command-line options, the backend, the output folder, plots."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyml
from anyml._dist import install_hint

BACKENDS = ("numpy", "cupy", "torch", "array-api-strict", "auto")
DEFAULT_OUT = Path(__file__).resolve().parent / "output"


def parser(description: str, *, epochs: int, batch_size: int, lr: float) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array library to train with ('auto': CuPy if a CUDA GPU is usable); "
                        "default: $ANYML_BACKEND, else numpy")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="learning rate of Adam")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="folder for the checkpoint and the plot")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def backend_name(args: argparse.Namespace) -> str:
    """``--backend`` if given, else ``ANYML_BACKEND`` from the environment, else ``"numpy"``."""
    if args.backend is not None:
        return str(args.backend)
    name = os.environ.get("ANYML_BACKEND", "").strip() or "numpy"
    if name not in BACKENDS:
        sys.exit(f"ANYML_BACKEND={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def backend_from(args: argparse.Namespace) -> anyml.Backend:
    be = anyml.make_backend(backend_name(args), dtype=args.dtype, seed=args.seed)
    print(f"backend: {be!r}")
    return be


def out_dir(args: argparse.Namespace) -> Path:
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def plot_curves(history: Mapping[str, Sequence[float]], path: Path, title: str) -> Path | None:
    """Plot the loss (and accuracy) curves of a training history to a PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no plot ({install_hint('examples')})")
        return None
    metrics = [m for m in ("loss", "accuracy") if m in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        epochs = range(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s--", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
