"""Data sets. Each builder returns a :class:`TensorData` in the frame the model trains in
(the normalised 2D frame for points; [-1, 1] NCHW for images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import DenoiselabError
from .toy2d import TOY_DATASETS, GaussianMixture, default_mixture, load_toy


@dataclass
class TensorData:
    x: torch.Tensor                       # (N, ...) float32
    y: Optional[torch.Tensor] = None      # (N,) int64 labels, or None
    kind: str = "points"                  # "points" or "images"
    num_classes: int = 0
    class_names: tuple = ()
    _perm: tuple = field(default=(None, None, None), repr=False, compare=False)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The batch of global step ``step``: consecutive slices of per-epoch permutations.

        A pure function of (step, seed), so a resumed run sees exactly the batches an
        uninterrupted one would, with no sampler state to save.
        """
        n = len(self)
        start = step * batch_size
        idx: list[torch.Tensor] = []
        filled = 0
        while filled < batch_size:
            epoch, pos = divmod(start + filled, n)
            perm = self._epoch_perm(epoch, seed)
            take = perm[pos:pos + batch_size - filled]
            idx.append(take)
            filled += len(take)
        index = torch.cat(idx)
        return self.x[index], (self.y[index] if self.y is not None else None)

    def _epoch_perm(self, epoch: int, seed: int) -> torch.Tensor:
        if self._perm[:2] != (epoch, seed):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._perm = (epoch, seed, torch.randperm(len(self), generator=g))
        return self._perm[2]


def _toy_builder(name: str) -> Callable[..., TensorData]:
    def build(options: dict, num: int, seed: int) -> TensorData:
        return TensorData(x=load_toy(name, num, seed), kind="points")

    return build


def _mnist(options: dict, num: int, seed: int) -> TensorData:
    from .images import load_mnist5k

    x, y = load_mnist5k()
    return TensorData(x=x, y=y, kind="images", num_classes=10, class_names=tuple(str(i) for i in range(10)))


def _digits(options: dict, num: int, seed: int) -> TensorData:
    from .images import load_sklearn_digits

    x, y = load_sklearn_digits()
    return TensorData(x=x, y=y, kind="images", num_classes=10, class_names=tuple(str(i) for i in range(10)))


DATASETS: dict[str, Callable[..., TensorData]] = {
    **{name: _toy_builder(name) for name in TOY_DATASETS},
    "mnist": _mnist,
    "digits": _digits,
}


def build_dataset(name: str, options: dict | None = None, num: int = 0, seed: int = 0) -> TensorData:
    if name not in DATASETS:
        raise DenoiselabError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name](dict(options or {}), num, seed)


__all__ = ["DATASETS", "TOY_DATASETS", "GaussianMixture", "TensorData", "build_dataset", "default_mixture", "load_toy"]
