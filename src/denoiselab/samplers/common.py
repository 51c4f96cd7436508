"""Pieces every sampler shares: noise draws and the callback."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..rng import SampleNoise

Noise = Union[SampleNoise, torch.Generator, None]
Callback = Optional[Callable[[dict], None]]


def randn(noise: Noise, stream: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like``; ``stream`` separates the draws of one run."""
    if isinstance(noise, SampleNoise):
        return noise.randn(stream, tuple(like.shape[1:]), dtype=like.dtype)
    return torch.randn(like.shape, generator=noise, dtype=like.dtype)


def initial_noise(noise: Noise, num: int, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """x_T ~ N(0, I): stream 0 of the run's noise."""
    return randn(noise, 0, torch.empty(num, *sample_shape))


def bcast(v, like: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=like.dtype)
    return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v
