"""Seeded random generators that return arrays on a backend's device.

Every :class:`~anyml.backend.Backend` has one, as ``backend.rng``, for per-step randomness (dropout
masks, RBM samples, SET rewiring). The NumPy and array-api-strict backends draw on the host with NumPy's
PCG64 and copy to the device; PyTorch and CuPy draw on the device with their own seeded generators.
Initial weights come from ``backend.host_rng`` instead, so one seed gives one model on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anyml.backend._base import Array, Backend

__all__ = ["CupyGenerator", "RandomGenerator", "TorchGenerator"]


class RandomGenerator:
    """A seeded random generator that returns arrays on its backend's device.

    Every method takes the shape first and returns an array in the backend's default float dtype
    (integers and permutations in ``int64``).
    """

    _gen: Any

    def __init__(self, backend: Backend, seed: int | None) -> None:
        self._backend = backend
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Reset the generator to ``seed`` (``None`` draws fresh entropy)."""
        self._gen = np.random.default_rng(seed)

    def _out(self, host: np.ndarray, dtype: Any) -> Array:
        return self._backend.from_host(host, dtype=dtype)

    def uniform(self, shape: Sequence[int], low: float = 0.0, high: float = 1.0,
                dtype: Any = None) -> Array:
        """Samples from :math:`U[low, high)` (never ``high``, also after rounding to ``dtype``)."""
        out = self._out(self._gen.uniform(low, high, size=tuple(shape)), dtype)
        return _below(self._backend, out, low, high)

    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0,
               dtype: Any = None) -> Array:
        """Samples from :math:`\\mathcal{N}(mean, std^2)`."""
        return self._out(self._gen.normal(mean, std, size=tuple(shape)), dtype)

    def bernoulli(self, shape: Sequence[int], p: float, dtype: Any = None) -> Array:
        """Ones with probability ``p`` and zeros otherwise, as floats."""
        return self._out((self._gen.random(size=tuple(shape)) < p).astype(np.float64), dtype)

    def integers(self, low: int, high: int, shape: Sequence[int]) -> Array:
        """Integers drawn uniformly from ``[low, high)``, as ``int64``."""
        return self._backend.from_host(self._gen.integers(low, high, size=tuple(shape)))

    def permutation(self, n: int) -> Array:
        """A random permutation of ``0 .. n-1``, as ``int64``."""
        return self._backend.from_host(self._gen.permutation(n))


def _below(backend: Backend, out: Array, low: float, high: float) -> Array:
    """``out`` with values rounded up to ``high`` moved to the largest value below it (one kernel,
    no sync); draws from ``[0, 1)`` need none."""
    if low == 0.0 and high == 1.0:
        return out
    xp = backend.xp
    top = float(np.nextafter(np.asarray(high, dtype=backend.dtype_name if out.dtype == backend.dtype
                                        else np.float64), -np.inf))
    with backend.activate():
        return xp.minimum(out, top) if high > low else out


class TorchGenerator(RandomGenerator):
    """Draws on the tensor's own device with a seeded ``torch.Generator``."""

    def seed(self, seed: int | None) -> None:
        torch = self._backend.module
        self._gen = torch.Generator(device=self._backend.device)
        if seed is None:
            self._gen.seed()
        else:
            self._gen.manual_seed(int(seed))

    def _dtype(self, dtype: Any) -> Any:
        return self._backend.dtype if dtype is None else dtype

    def uniform(self, shape: Sequence[int], low: float = 0.0, high: float = 1.0,
                dtype: Any = None) -> Array:
        torch = self._backend.module
        out = torch.empty(tuple(shape), dtype=self._dtype(dtype), device=self._backend.device)
        return _below(self._backend, out.uniform_(low, high, generator=self._gen), low, high)

    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0,
               dtype: Any = None) -> Array:
        torch = self._backend.module
        out = torch.empty(tuple(shape), dtype=self._dtype(dtype), device=self._backend.device)
        return out.normal_(mean, std, generator=self._gen)

    def bernoulli(self, shape: Sequence[int], p: float, dtype: Any = None) -> Array:
        torch = self._backend.module
        out = torch.empty(tuple(shape), dtype=self._dtype(dtype), device=self._backend.device)
        return out.bernoulli_(p, generator=self._gen)

    def integers(self, low: int, high: int, shape: Sequence[int]) -> Array:
        torch = self._backend.module
        return torch.randint(low, high, tuple(shape), generator=self._gen,
                             device=self._backend.device, dtype=torch.int64)

    def permutation(self, n: int) -> Array:
        torch = self._backend.module
        return torch.randperm(n, generator=self._gen, device=self._backend.device)


class CupyGenerator(RandomGenerator):
    """Draws on the backend's GPU with a seeded ``cupy.random.RandomState``.

    Every call runs under ``with device:``, since CuPy allocates on the *current* device.
    """

    def seed(self, seed: int | None) -> None:
        with self._backend.device:
            self._gen = self._backend.module.random.RandomState(seed)

    def _dtype(self, dtype: Any) -> Any:
        return self._backend.dtype if dtype is None else dtype

    def uniform(self, shape: Sequence[int], low: float = 0.0, high: float = 1.0,
                dtype: Any = None) -> Array:
        """Drawn in the target dtype (half the bandwidth of float64 for float32)."""
        with self._backend.device:
            if low == 0.0 and high == 1.0:
                return self._gen.random_sample(size=tuple(shape), dtype=self._dtype(dtype))
            out = self._gen.uniform(low, high, size=tuple(shape), dtype=self._dtype(dtype))
        return _below(self._backend, out, low, high)

    def normal(self, shape: Sequence[int], mean: float = 0.0, std: float = 1.0,
               dtype: Any = None) -> Array:
        with self._backend.device:
            return self._gen.normal(mean, std, size=tuple(shape), dtype=self._dtype(dtype))

    def bernoulli(self, shape: Sequence[int], p: float, dtype: Any = None) -> Array:
        with self._backend.device:
            out = self._gen.random_sample(size=tuple(shape), dtype=self._dtype(dtype)) < p
            return out.astype(self._dtype(dtype))

    def integers(self, low: int, high: int, shape: Sequence[int]) -> Array:
        with self._backend.device:
            return self._gen.randint(low, high, size=tuple(shape), dtype=self._backend.module.int64)

    def permutation(self, n: int) -> Array:
        with self._backend.device:
            return self._gen.permutation(n).astype(self._backend.module.int64, copy=False)
