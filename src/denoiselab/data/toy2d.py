"""2D toy data sets, each a pure function of (n, seed).

Swiss roll, moons, circles, s-curve and checkerboard follow the KAIST CS479 diffusion
assignment's ``load_twodim`` exactly (the same scikit-learn generators, columns and the
normalisation ``(x - mean) / std * 2`` with ONE scalar mean and std over the whole array), so
chamfer distances are comparable with that assignment. Gaussian mixtures carry their exact
density for likelihood metrics.

One difference matters: the assignment normalises every draw by its own mean and std, so two
draws of true data sit in slightly shifted frames (2048 vs 2048 points: chamfer about 10 on
the swiss roll). Here the mean and std are those of the whole distribution (a fixed draw of
one million points, the assignment's training-set size), so every draw, training set and
reference alike, lives in one frame and two true draws give chamfer about 0.38.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from ..errors import DenoiselabError

NORM_POOL = 1_000_000  # points whose mean and std define the frame (the assignment's N)


def _raw_swiss_roll(n: int, seed: int) -> np.ndarray:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=0.0, random_state=seed, hole=True)
    return x[:, [0, 2]]


@lru_cache(maxsize=None)
def _frame(name: str) -> tuple[float, float]:
    """One scalar mean and std of a data set's distribution (a fixed draw of NORM_POOL points)."""
    x = _RAW[name](NORM_POOL, 0)
    return float(x.mean()), float(x.std())


def normalize(x: np.ndarray, name: str, scale: float = 2.0) -> np.ndarray:
    """(x - mean) / std * scale with one scalar mean and std (KAIST), taken over the distribution."""
    mean, std = _frame(name)
    return (x - mean) / std * scale


def swiss_roll(n: int, seed: int) -> np.ndarray:
    return normalize(_raw_swiss_roll(n, seed), "swiss-roll")


def _raw_moons(n: int, seed: int) -> np.ndarray:
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=0.0, random_state=seed)[0]


def moons(n: int, seed: int) -> np.ndarray:
    return normalize(_raw_moons(n, seed), "moons")


def circles(n: int, seed: int) -> np.ndarray:
    from sklearn.datasets import make_circles

    x, _ = make_circles(n_samples=n, noise=0.0, random_state=seed, factor=0.5)
    return x * 4


def _raw_s_curve(n: int, seed: int) -> np.ndarray:
    from sklearn.datasets import make_s_curve

    return make_s_curve(n_samples=n, noise=0.0, random_state=seed)[0][:, [0, 2]]


def s_curve(n: int, seed: int) -> np.ndarray:
    return normalize(_raw_s_curve(n, seed), "s-curve")


def _raw_checkerboard(n: int, seed: int) -> np.ndarray:
    """Checkerboard of SB-FBSDE (Chen et al. 2022) as used by KAIST: 3n uniform draws, keep the
    squares where sin(x) and sin(y) share a sign; we then keep exactly n of them."""
    rng = np.random.default_rng(seed)
    out = []
    got = 0
    while got < n:
        x = rng.uniform(-2 * np.pi, 2 * np.pi, size=(3 * n, 2))
        keep = (np.sin(x[:, 0]) > 0) == (np.sin(x[:, 1]) > 0)
        out.append(x[keep])
        got += int(keep.sum())
    return np.concatenate(out)[:n]


def checkerboard(n: int, seed: int) -> np.ndarray:
    return normalize(_raw_checkerboard(n, seed), "checkerboard")


_RAW = {"swiss-roll": _raw_swiss_roll, "moons": _raw_moons, "s-curve": _raw_s_curve,
        "checkerboard": _raw_checkerboard}


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k w_k N(mu_k, var_k I) in 2D, with its exact log-density."""

    means: np.ndarray
    variances: np.ndarray
    weights: np.ndarray

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + rng.standard_normal((n, self.means.shape[1])) * np.sqrt(self.variances[k])[:, None]

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        d = x.shape[1]
        diff = x[:, None, :] - self.means[None]
        lp = (np.log(self.weights)[None] - 0.5 * (diff**2).sum(-1) / self.variances[None]
              - 0.5 * d * np.log(2 * np.pi * self.variances)[None])
        m = lp.max(1, keepdims=True)
        return (m + np.log(np.exp(lp - m).sum(1, keepdims=True)))[:, 0]


def default_mixture() -> GaussianMixture:
    """Eight Gaussians on a circle of radius 3 (std 0.3): the usual multimodal 2D benchmark."""
    ang = np.arange(8) * 2 * np.pi / 8
    means = 3.0 * np.stack([np.cos(ang), np.sin(ang)], 1)
    return GaussianMixture(means=means, variances=np.full(8, 0.09), weights=np.full(8, 1 / 8))


def gaussians(n: int, seed: int) -> np.ndarray:
    return default_mixture().sample(n, seed)


TOY_DATASETS: dict[str, Callable[[int, int], np.ndarray]] = {
    "swiss-roll": swiss_roll,
    "moons": moons,
    "circles": circles,
    "s-curve": s_curve,
    "checkerboard": checkerboard,
    "gaussians": gaussians,
}


def load_toy(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points of the named 2D data set as a float32 (n, 2) tensor, in the normalised frame."""
    if name not in TOY_DATASETS:
        raise DenoiselabError(f"unknown 2D data set {name!r}: choose one of {', '.join(TOY_DATASETS)}")
    if n < 1:
        raise DenoiselabError(f"number of points must be positive, got {n}")
    return torch.from_numpy(np.ascontiguousarray(TOY_DATASETS[name](n, seed))).float()
