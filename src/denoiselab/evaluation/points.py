"""2D metrics beyond chamfer: sliced Wasserstein distance and the exact negative log-likelihood
of samples under a Gaussian-mixture data set's true density (MMD lives in mmd.py).

| symbol | meaning |
| --- | --- |
| ``x`` (n, d), ``y`` (m, d) | samples and reference points |
| ``theta_l`` | unit projection directions, l = 1..L |
| ``F^{-1}`` | quantile function of a 1-D projection |
| ``p(x)`` | the true mixture density (data.GaussianMixture.log_prob) |

Sliced 2-Wasserstein distance (defined by Rabin et al. 2011; as in Bonneel et al. 2015):

    SW_2(P, Q)^2 = mean_l int_0^1 |F^{-1}_{theta_l . x}(u) - F^{-1}_{theta_l . y}(u)|^2 du.

The 1-D W_2 between two empirical measures is exact from sorted projections; with n != m both
quantile functions are read on the merged grid of their jump points, so no sample is dropped.
In 2D the directions are L evenly spaced angles (deterministic, no seed); in higher dimensions
they are drawn from a seeded generator.

Negative log-likelihood: NLL = -1/n sum_i log p(x_i). For true samples its expectation is the
entropy H(p); a sampler that collapses onto the modes can score below H (the NLL rewards
concentrating where p is high), so it is read together with MMD and SWD, never alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import DenoiselabError


def _directions(d: int, num: int, seed: int) -> torch.Tensor:
    if d == 2:
        ang = torch.arange(num, dtype=torch.float64) * math.pi / num
        return torch.stack([ang.cos(), ang.sin()], 1)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(num, d, generator=g, dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


def _w2_sq_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared W_2 between the empirical measures of each row pair of sorted (L, n) and (L, m)."""
    n, m = a.shape[1], b.shape[1]
    if n == m:
        return (a - b).pow(2).mean(1)
    # Merged grid of quantile levels: on each cell both quantile functions are constant.
    u = torch.unique(torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                                torch.arange(1, m + 1, dtype=torch.float64) / m]))
    u = u[u <= 1.0]
    du = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), u]))
    mid = u - du / 2
    ia = (mid * n).floor().long().clamp_max(n - 1)
    ib = (mid * m).floor().long().clamp_max(m - 1)
    return ((a[:, ia] - b[:, ib]).pow(2) * du).sum(1)


def sliced_wasserstein(x, y, num_directions: int = 128, seed: int = 0) -> float:
    """SW_2 (not squared), in the units of the data."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(len(x), -1)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64).reshape(len(y), -1)
    if x.shape[1] != y.shape[1]:
        raise DenoiselabError(f"sliced Wasserstein needs equal dimensions, got {x.shape[1]} and {y.shape[1]}")
    if len(x) == 0 or len(y) == 0:
        raise DenoiselabError("sliced Wasserstein needs at least one point on each side")
    theta = _directions(x.shape[1], num_directions, seed)
    px = (theta @ x.T).sort(1).values
    py = (theta @ y.T).sort(1).values
    return float(_w2_sq_1d(px, py).mean().sqrt())


def mixture_nll(x, mixture) -> float:
    """-1/n sum_i log p(x_i) under the exact mixture density, in nats per sample."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != mixture.means.shape[1]:
        raise DenoiselabError(f"samples have {x.shape[1]} dimensions, the mixture {mixture.means.shape[1]}")
    return float(-mixture.log_prob(x).mean())
