"""The optimizer and its learning-rate schedule, both read from the training config; the rate is a
function of the step alone, so a resumed run sets the same rate at the same step."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..errors import DenoiselabError


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over cfg.warmup steps, then constant, cosine (Loshchilov & Hutter 2017) or
    exponential decay reaching lr * lr_final at the last step."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    p = min(1.0, (step - cfg.warmup) / span)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * p)))
    if cfg.lr_schedule == "exponential":
        return cfg.lr * (max(cfg.lr_final, 1e-12) ** p)
    raise DenoiselabError(f"unknown lr_schedule {cfg.lr_schedule!r}: use constant, cosine or exponential")


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    # fused: one kernel per optimizer step instead of a dozen per parameter group (CPU and CUDA).
    kw = dict(lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    raise DenoiselabError(f"unknown optimizer {cfg.optimizer!r}: use adam or adamw")
