"""How a run stops safely: on a signal (a checkpoint saved first), or at the first non-finite loss
(nothing after it saved)."""

from __future__ import annotations

import torch

from ..errors import DenoiselabError


class TrainingInterrupted(DenoiselabError):
    """SIGINT or SIGTERM during training: a checkpoint was saved; exit with 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteWatch:
    """The first step whose loss is NaN or inf, tracked on the device without a sync per step."""

    def __init__(self, device):
        self.step = torch.full((), -1, dtype=torch.int64, device=device)
        self.loss = torch.zeros((), device=device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        first = (self.step < 0) & ~torch.isfinite(loss)
        self.step = torch.where(first, torch.full_like(self.step, step), self.step)
        self.loss = torch.where(first, loss, self.loss)

    def found(self) -> bool:
        return int(self.step) >= 0
