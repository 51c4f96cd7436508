"""Exponential moving average of weights (Polyak averaging; used by Ho et al. 2020 with 0.9999)."""

from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # Warm-up of the decay, min(decay, (1 + n) / (10 + n)), so early averages are not dominated
        # by the random initialisation (the TensorFlow ExponentialMovingAverage num_updates rule).
        d = min(self.decay, (1 + step) / (10 + step))
        ema_p = list(self.module.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - d)
        for eb, b in zip(self.module.buffers(), model.buffers()):
            eb.copy_(b)
