"""A character-level LSTM language model on a few kilobytes of traditional nursery rhymes.

The network reads ``--seq-len`` characters (one-hot) and predicts the next character at every step:
an LSTM, a ``Permute`` to channels-last, then a width-1 ``Conv1D`` (one dense layer applied to each
time step's hidden state), trained with the fused softmax cross-entropy on the logits. Every few
epochs, and at the end, it writes text by sampling one character at a time from its own predictions.

    python examples/char_lstm.py
    python examples/char_lstm.py --backend torch --temperature 0.5
    python examples/char_lstm.py --sample examples/output/char_lstm.npz --prompt "mary had a"

The text (``examples/data/nursery_rhymes.txt``, public domain) is lowercased; its last tenth is held
out to report a validation loss. Losses are reported **per character** (the model's loss is per
window of ``--seq-len`` characters; every line and the plot divide it by ``--seq-len``). The model
uses only anyml's own layers, so ``anyml.load`` reads its checkpoint anywhere; the alphabet and the
window length are saved next to it (``char_lstm.json``), which is all ``--sample`` needs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

import anyml
from anyml.layers import LSTM, Conv1D, Permute
from anyml.model import Sequential

TEXT = Path(__file__).resolve().parent / "data" / "nursery_rhymes.txt"


class Corpus:
    """The text as integer codes, and windows of it as one-hot inputs and next-character targets."""

    def __init__(self, text: str, chars: list[str] | None = None) -> None:
        self.text = text
        self.chars = sorted(set(text)) if chars is None else list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.codes = np.array([self.index[c] for c in text if c in self.index], dtype=np.int64)

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


def build_model(be: anyml.Backend, vocab: int, hidden: int, lr: float) -> Sequential:
    return Sequential([
        LSTM(hidden, backend=be),                     # (n, hidden, seq_len)
        Permute((2, 1), backend=be),                  # (n, seq_len, hidden)
        Conv1D(vocab, 1, backend=be),                 # (n, seq_len, vocab): a dense layer per step
    ], loss="CrossEntropy(from_logits=True, reduction='mean')", optimizer=f"Adam(lr={lr})",
        clip_norm=5.0)


def sample(model: Sequential, corpus: Corpus, prompt: str, n_chars: int, temperature: float,
           rng: np.random.Generator, seq_len: int) -> str:
    """Extend ``prompt`` one sampled character at a time (its unknown characters are dropped)."""
    codes = [corpus.index[c] for c in prompt if c in corpus.index] or [0]
    for _ in range(n_chars):
        window = np.array([codes[-seq_len:]])
        logits = anyml.to_numpy(model.predict(corpus.one_hot(window)))[0, -1].astype(np.float64)
        z = logits / temperature
        p = np.exp(z - z.max())
        codes.append(int(rng.choice(corpus.vocab, p=p / p.sum())))
    return corpus.decode(codes)


def sample_from(checkpoint: Path, prompt: str, n_chars: int, temperature: float, seed: int,
                backend: anyml.Backend) -> str:
    """Load a checkpoint written by this script (and its ``.json``) and sample from it."""
    meta = json.loads(checkpoint.with_suffix(".json").read_text(encoding="utf-8"))
    model = anyml.load(checkpoint, backend=backend)
    corpus = Corpus("", chars=meta["chars"])
    return sample(model, corpus, prompt.lower(), n_chars, temperature,
                  np.random.default_rng(seed), meta["seq_len"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, sample, save; or ``--sample CHECKPOINT``. Returns the results (used by the tests)."""
    p = _common.parser(__doc__.splitlines()[0], epochs=20, batch_size=32, lr=0.005)
    p.add_argument("--hidden", type=int, default=128, help="LSTM state size")
    p.add_argument("--seq-len", type=int, default=32, help="characters per training window")
    p.add_argument("--stride", type=int, default=3, help="step between training windows")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature")
    p.add_argument("--sample-every", type=int, default=5, help="epochs between samples")
    p.add_argument("--sample-chars", type=int, default=200)
    p.add_argument("--limit", type=int, default=None, help="use only this many characters of text")
    p.add_argument("--sample", type=Path, metavar="CHECKPOINT", default=None,
                   help="do not train: load CHECKPOINT (written by this script) and write text")
    p.add_argument("--prompt", default="twinkle, twinkle", help="the start of the --sample text")
    args = p.parse_args(argv)
    be = _common.backend_from(args)
    if args.sample is not None:
        text = sample_from(args.sample, args.prompt, args.sample_chars, args.temperature, args.seed,
                           be)
        print(text)
        return {"sample": text}
    out = _common.out_dir(args)
    corpus = Corpus(TEXT.read_text(encoding="utf-8").lower()[: args.limit])
    split = int(0.9 * len(corpus.codes))
    X, y = corpus.windows(0, split, args.seq_len, args.stride)
    X_val, y_val = corpus.windows(split - args.seq_len, len(corpus.codes), args.seq_len, args.seq_len)
    print(f"text: {len(corpus.text)} characters, {corpus.vocab} distinct; {len(X)} training and "
          f"{len(X_val)} validation windows of {args.seq_len}")
    model = build_model(be, corpus.vocab, args.hidden, args.lr)
    rng = np.random.default_rng(args.seed)
    line_starts = [0] + [i + 1 for i, c in enumerate(corpus.text[:split]) if c == "\n"
                         and i + 1 + args.seq_len < split]

    def per_char(logs: dict[str, float]) -> dict[str, float]:
        return {k: v / args.seq_len if k.endswith("loss") else v for k, v in logs.items()}

    def report(epoch: int, logs: dict[str, float]) -> None:
        """One line per epoch, losses per character (fit's own lines are per window)."""
        if not args.no_progress:
            parts = " - ".join(f"{k} {v:.3f}" for k, v in per_char(logs).items())
            print(f"epoch {epoch + 1}/{args.epochs} - per character: {parts}", flush=True)
        if (epoch + 1) % args.sample_every == 0 and epoch + 1 < args.epochs:
            start = int(rng.choice(line_starts))
            prompt = corpus.text[start:start + args.seq_len]
            text = sample(model, corpus, prompt, args.sample_chars // 2, args.temperature, rng,
                          args.seq_len)
            print(f"--- sample after epoch {epoch + 1} ---\n{text}\n---")

    start_time = time.perf_counter()
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(X_val, y_val), verbose=False, callbacks=[report])
    seconds = time.perf_counter() - start_time
    history = {k: [per_char({k: v})[k] for v in values] for k, values in history.items()}
    print(f"{model.count_params()} parameters, trained in {seconds:.1f} s; per character: "
          f"train loss {history['loss'][-1]:.3f}, validation loss {history['val_loss'][-1]:.3f}, "
          f"validation accuracy {history['val_accuracy'][-1]:.1%}")
    start = int(rng.choice(line_starts))
    text = sample(model, corpus, corpus.text[start:start + args.seq_len], args.sample_chars,
                  args.temperature, rng, args.seq_len)
    print(f"--- sample (temperature {args.temperature}) ---\n{text}\n---")
    checkpoint = out / "char_lstm.safetensors"
    model.save(checkpoint)
    checkpoint.with_suffix(".json").write_text(
        json.dumps({"chars": corpus.chars, "seq_len": args.seq_len}), encoding="utf-8")
    plot = _common.plot_curves(history, out / "char_lstm.png",
                               "char-LSTM: cross-entropy per character (nats)")
    print(f"checkpoint: {checkpoint} (sample from it: python examples/char_lstm.py --sample "
          f"{checkpoint})")
    return {"history": history, "sample": text, "checkpoint": checkpoint, "seconds": seconds,
            "plot": plot}


if __name__ == "__main__":
    main()
