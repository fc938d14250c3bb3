"""A character-level LSTM language model on a few kilobytes of traditional nursery rhymes.

The network reads ``--seq-len`` characters (one-hot) and predicts the next character at every step:
an LSTM, then one dense layer applied to each time step's hidden state, trained with the fused
softmax cross-entropy on the logits. Every few epochs, and at the end, it writes text by sampling
one character at a time from its own predictions.

    python examples/char_lstm.py
    python examples/char_lstm.py --backend torch --temperature 0.5

The text (``examples/data/nursery_rhymes.txt``, public domain) is lowercased; its last tenth is held
out to report a validation loss. Two small layers defined here move the time axis in and out of the
batch axis so that a ``FullyConnected`` layer acts on every step; they are registered with
:func:`anyml.checkpoint.register_layer`, so the checkpoint can name them.
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
from anyml.checkpoint import register_layer
from anyml.layers.base import LayerBase
from anyml.layers.dense import FullyConnected
from anyml.layers.recurrent import LSTM
from anyml.model import Sequential

TEXT = Path(__file__).resolve().parent / "data" / "nursery_rhymes.txt"


@register_layer
class TimeToRows(LayerBase):
    """``(n_ex, n_in, n_t) -> (n_ex * n_t, n_in)``: each time step of each sequence becomes a row."""

    def forward(self, X: Any, retain_derived: bool = True) -> Any:
        self._check_input(X, ndim=3, shape="(n_ex, n_in, n_t)")
        n_ex, n_in, n_t = X.shape
        Y = self.xp.reshape(self.xp.permute_dims(X, (0, 2, 1)), (n_ex * n_t, n_in))
        self._push(retain_derived, X=X, _in_shape=tuple(X.shape), _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Any, retain_grads: bool = True) -> Any:
        n_ex, n_in, n_t = self._pop(dLdy)["_in_shape"]
        return self.xp.permute_dims(self.xp.reshape(dLdy, (n_ex, n_t, n_in)), (0, 2, 1))


@register_layer
class RowsToTime(LayerBase):
    """``(n_ex * n_t, n_out) -> (n_ex, n_t, n_out)``: the rows of each sequence back together."""

    def __init__(self, n_t: int, optimizer: Any = None, *, backend: Any = None) -> None:
        super().__init__(optimizer, backend=backend)
        self.n_t = int(n_t)

    def _config(self) -> dict[str, Any]:
        return {"n_t": self.n_t}

    def forward(self, X: Any, retain_derived: bool = True) -> Any:
        self._check_input(X, ndim=2, shape="(n_ex * n_t, n_out)")
        if X.shape[0] % self.n_t:
            msg = f"RowsToTime: {X.shape[0]} rows are not a whole number of {self.n_t}-step sequences"
            raise ValueError(msg)
        Y = self.xp.reshape(X, (X.shape[0] // self.n_t, self.n_t, X.shape[1]))
        self._push(retain_derived, X=X, _in_shape=tuple(X.shape), _shape=tuple(Y.shape))
        return Y

    def backward(self, dLdy: Any, retain_grads: bool = True) -> Any:
        return self.xp.reshape(dLdy, self._pop(dLdy)["_in_shape"])


class Corpus:
    """The text as integer codes, and windows of it as one-hot inputs and next-character targets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.codes = np.array([self.index[c] for c in text], dtype=np.int64)

    @property
    def vocab(self) -> int:
        return len(self.chars)

    def one_hot(self, codes: np.ndarray) -> np.ndarray:
        """``(n, n_t)`` codes -> ``(n, vocab, n_t)`` one-hot floats (the LSTM's layout)."""
        return np.eye(self.vocab, dtype=np.float32)[codes].transpose(0, 2, 1)

    def windows(self, start: int, stop: int, seq_len: int, stride: int) -> tuple[np.ndarray, ...]:
        """Inputs ``codes[s : s + seq_len]`` and targets shifted by one, for s in start..stop."""
        starts = np.arange(start, stop - seq_len - 1, stride)
        idx = starts[:, None] + np.arange(seq_len)
        return self.one_hot(self.codes[idx]), self.codes[idx + 1]

    def decode(self, codes: Any) -> str:
        return "".join(self.chars[int(c)] for c in codes)


def build_model(be: anyml.Backend, vocab: int, hidden: int, seq_len: int, lr: float) -> Sequential:
    opt = f"Adam(lr={lr}, clip_norm=5.0)"
    return Sequential([
        LSTM(hidden, optimizer=opt, backend=be),                      # (n, hidden, seq_len)
        TimeToRows(backend=be),                                       # (n * seq_len, hidden)
        FullyConnected(vocab, optimizer=opt, backend=be),             # (n * seq_len, vocab)
        RowsToTime(seq_len, backend=be),                              # (n, seq_len, vocab)
    ], loss="CrossEntropy(from_logits=True, reduction='mean')")


def sample(model: Sequential, corpus: Corpus, prompt: str, n_chars: int, temperature: float,
           rng: np.random.Generator) -> str:
    """Extend ``prompt`` (at least ``seq_len`` characters) one sampled character at a time."""
    seq_len = model.layers[-1].n_t
    codes = [corpus.index[c] for c in prompt]
    for _ in range(n_chars):
        window = np.array([codes[-seq_len:]])
        logits = anyml.to_numpy(model.predict(corpus.one_hot(window)))[0, -1].astype(np.float64)
        z = logits / temperature
        p = np.exp(z - z.max())
        codes.append(int(rng.choice(corpus.vocab, p=p / p.sum())))
    return corpus.decode(codes)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, sample, save; return the results (used by the tests)."""
    p = _common.parser(__doc__.splitlines()[0], epochs=20, batch_size=32, lr=0.005)
    p.add_argument("--hidden", type=int, default=128, help="LSTM state size")
    p.add_argument("--seq-len", type=int, default=32, help="characters per training window")
    p.add_argument("--stride", type=int, default=3, help="step between training windows")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    p.add_argument("--sample-every", type=int, default=5, help="epochs between samples")
    p.add_argument("--sample-chars", type=int, default=200)
    p.add_argument("--limit", type=int, default=None, help="use only this many characters of text")
    args = p.parse_args(argv)
    be = _common.backend_from(args)
    out = _common.out_dir(args)
    corpus = Corpus(TEXT.read_text(encoding="utf-8").lower()[: args.limit])
    split = int(0.9 * len(corpus.codes))
    X, y = corpus.windows(0, split, args.seq_len, args.stride)
    X_val, y_val = corpus.windows(split - args.seq_len, len(corpus.codes), args.seq_len, args.seq_len)
    print(f"text: {len(corpus.text)} characters, {corpus.vocab} distinct; {len(X)} training and "
          f"{len(X_val)} validation windows of {args.seq_len}")
    model = build_model(be, corpus.vocab, args.hidden, args.seq_len, args.lr)
    rng = np.random.default_rng(args.seed)
    line_starts = [0] + [i + 1 for i, c in enumerate(corpus.text[:split]) if c == "\n"
                         and i + 1 + args.seq_len < split]

    def show_sample(epoch: int, logs: dict[str, float]) -> None:
        if (epoch + 1) % args.sample_every == 0 and epoch + 1 < args.epochs:
            start = int(rng.choice(line_starts))
            prompt = corpus.text[start:start + args.seq_len]
            text = sample(model, corpus, prompt, args.sample_chars // 2, args.temperature, rng)
            print(f"--- sample after epoch {epoch + 1} ---\n{text}\n---")

    start_time = time.perf_counter()
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(X_val, y_val), verbose=not args.no_progress,
                        callbacks=[show_sample])
    seconds = time.perf_counter() - start_time
    print(f"{model.count_params()} parameters, trained in {seconds:.1f} s; per character: "
          f"train loss {history['loss'][-1] / args.seq_len:.3f}, validation loss "
          f"{history['val_loss'][-1] / args.seq_len:.3f}, validation accuracy "
          f"{history['val_accuracy'][-1]:.1%}")
    start = int(rng.choice(line_starts))
    text = sample(model, corpus, corpus.text[start:start + args.seq_len], args.sample_chars,
                  args.temperature, rng)
    print(f"--- sample (temperature {args.temperature}) ---\n{text}\n---")
    checkpoint = out / "char_lstm.safetensors"
    model.save(checkpoint)
    print(f"checkpoint: {checkpoint}")
    return {"history": history, "sample": text, "checkpoint": checkpoint, "seconds": seconds}


if __name__ == "__main__":
    main()
