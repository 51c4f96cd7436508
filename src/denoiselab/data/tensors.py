"""A data set held as tensors: what every data set builder returns and the trainer draws batches from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import DenoiselabError


@dataclass
class TensorData:
    x: torch.Tensor                       # (N, ...) float32
    y: Optional[torch.Tensor] = None      # (N,) int64 labels, or None
    kind: str = "points"                  # "points" or "images"
    num_classes: int = 0
    class_names: tuple = ()
    hflip: bool = False                   # images: mirror each drawn sample with probability 1/2
    balance: float = 0.0                  # labelled data: batches drawn with probability ~ N_c^-balance
    _perm: tuple = field(default=(None, None, None), repr=False, compare=False)
    _u8: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)  # x as bytes (see ``to``)

    def to(self, device) -> "TensorData":
        """The data set held on ``device``, so the trainer never waits for a host copy: the same
        object on the CPU; elsewhere a copy whose images are kept as uint8 (4x less memory, decoded
        per batch on the device) when x is exactly u8 / 127.5 - 1, as decoded files are, else as x."""
        device = torch.device(device)
        return self if device.type == "cpu" else self.stored_on(device)

    def stored_on(self, device) -> "TensorData":
        """A copy held on ``device`` (images as uint8 where that is exact); see ``to``."""
        x, u8 = self.x, None
        if self.kind == "images":
            q = (self.x + 1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
            if torch.equal(decode_uint8(q), self.x):
                u8, x = q.to(device), None
        if u8 is None:
            x = self.x.to(device)
        out = TensorData(x=x if x is not None else torch.empty((0, *self.sample_shape), device=device),
                         y=self.y.to(device) if self.y is not None else None, kind=self.kind,
                         num_classes=self.num_classes, class_names=self.class_names, hflip=self.hflip,
                         balance=self.balance, _u8=u8)
        return out

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0] if self._u8 is None else self._u8.shape[0]

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The batch of global step ``step``: consecutive slices of per-epoch permutations.

        A pure function of (step, seed), so a resumed run sees exactly the batches an
        uninterrupted one would, with no sampler state to save.
        """
        index = self.batch_index(step, batch_size, seed)
        store = self.x if self._u8 is None else self._u8
        index = index.to(store.device)
        x = store[index] if self._u8 is None else decode_uint8(store[index])
        if self.hflip:
            # The flips are a pure function of (step, seed) too, so resuming stays exact; drawn on
            # the CPU, applied where the images are.
            g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_777_777)
            flip = (torch.rand(batch_size, generator=g) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, (self.y[index] if self.y is not None else None)

    def batch_index(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices of the batch of ``step``: consecutive slices of per-epoch permutations; with
        ``balance`` > 0, drawn with replacement, image i with probability proportional to
        N_{y_i}^-balance (``class_balance_weights``), from a generator seeded by (seed, step)."""
        if self.balance > 0:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step + 3_333_333)
            return torch.multinomial(class_balance_weights(self.y, self.balance), batch_size, replacement=True,
                                     generator=g)
        n = len(self)
        start = step * batch_size
        idx: list[torch.Tensor] = []
        filled = 0
        while filled < batch_size:
            epoch, pos = divmod(start + filled, n)
            take = self._epoch_perm(epoch, seed)[pos:pos + batch_size - filled]
            idx.append(take)
            filled += len(take)
        return torch.cat(idx)

    def _epoch_perm(self, epoch: int, seed: int) -> torch.Tensor:
        if self._perm[:2] != (epoch, seed):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._perm = (epoch, seed, torch.randperm(len(self), generator=g))
        return self._perm[2]


def class_balance_weights(y: Optional[torch.Tensor], power: float) -> torch.Tensor:
    """Per-image sampling weights N_{y_i}^-power (N_c: the count of class c), so class c is drawn
    with probability proportional to N_c^(1 - power): power 1 draws every class equally often,
    0.5 in proportion to the square root of its size (re-sampling by class frequency, as in
    Mahajan et al. 2018, sec. 3.1)."""
    if y is None:
        raise DenoiselabError("data.balance draws classes evenly, and this data set has no labels: "
                              "choose labelled data or leave data.balance at 0")
    y = y.cpu()
    counts = torch.bincount(y, minlength=int(y.max()) + 1).double()
    return counts[y].pow(-float(power))


def decode_uint8(u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 [-1, 1], the same operations as the file loaders (bit-equal)."""
    return u8.float().div_(127.5).sub_(1.0)
