"""Maximum mean discrepancy: KID (cubic polynomial kernel on features) and the RBF MMD of 2D points.

| symbol | meaning |
| --- | --- |
| ``x`` (m, D), ``y`` (n, D) | samples of P and Q (features or points) |
| ``k(a, b)`` | kernel; KID: (a.b / D + 1)^3; 2D: sum over bandwidths s of exp(-|a - b|^2 / (2 s^2)) |
| ``MMD^2_u`` | the unbiased estimate of MMD^2(P, Q); it can be slightly negative when P = Q |

Unbiased estimator, Gretton et al. 2012, eq. 3 (Lemma 6):

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j).

KID (Binkowski et al. 2018, Demystifying MMD GANs, where KID is defined) is this estimate with the cubic
polynomial kernel, averaged over random subsets of both sets (subset size 1000 and 100 subsets,
as in that paper's code and torch-fidelity); its spread over subsets gives the standard error.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import DenoiselabError

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

RBF_BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)  # 2D frame (data std about 2): a sum of scales is characteristic at every scale


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel (Binkowski et al. 2018): k(a, b) = (a.b / D + 1)^3."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] = RBF_BANDWIDTHS) -> torch.Tensor:
    d2 = torch.cdist(a, b).pow(2)
    return sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)


def mmd2_from_kernels(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    """Gretton et al. 2012, eq. 3, from the three kernel matrices. Sums in float64: a float32 sum
    over 10^6 kernel values loses the digits that the difference of the terms keeps."""
    m, n = kxy.shape
    if m < 2 or n < 2:
        raise DenoiselabError(f"MMD needs at least 2 samples on each side, got {m} and {n}")
    kxx, kyy, kxy = kxx.double(), kyy.double(), kxy.double()
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.sum() / (m * n))


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, kernel: Kernel) -> float:
    return mmd2_from_kernels(kernel(x, x), kernel(y, y), kernel(x, y))


def kid(fx, fy, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        grams: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Kernel Inception Distance of feature arrays fx (m, D) and fy (n, D).

    Returns {"value": mean over subsets, "std": spread over subsets, "se": std / sqrt(subsets),
    "subset_size": used size}. Subsets larger than a set shrink to that set's size. ``grams`` =
    (fx fx^T, fy fy^T, fx fy^T), when already computed, saves the products.
    """
    x = torch.as_tensor(np.asarray(fx) if not torch.is_tensor(fx) else fx, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(fy) if not torch.is_tensor(fy) else fy, dtype=torch.float32)
    d = x.shape[1]
    size = min(subset_size, len(x), len(y))
    g = torch.Generator().manual_seed(seed)
    picks = [(torch.randperm(len(x), generator=g)[:size], torch.randperm(len(y), generator=g)[:size])
             for _ in range(subsets)]
    if grams is None:
        vals = np.array([mmd2_unbiased(x[ix], y[iy], polynomial_kernel) for ix, iy in picks])
    else:
        vals = _kid_from_grams(grams, picks, d, size).numpy()
    std = float(vals.std(ddof=1)) if subsets > 1 else float("nan")
    return {"value": float(vals.mean()), "std": std, "se": std / float(np.sqrt(subsets)), "subset_size": size}


def _kid_from_grams(grams, picks, d: int, size: int) -> torch.Tensor:
    """Every subset's eq. 3 at once. With one 0/1 column per subset, S, the block sums
    sum_{i, j in subset} K_ij are the column sums of (K S) * S: three products with S replace the
    3 x subsets gathers of random kernel blocks, which cost 10x more in memory traffic."""
    gxx, gyy, gxy = grams
    sx = torch.zeros(len(gxx), len(picks))
    sy = torch.zeros(len(gyy), len(picks))
    for s, (ix, iy) in enumerate(picks):
        sx[ix, s] = 1.0
        sy[iy, s] = 1.0
    m = size

    def block_sums(gram, a, b, same):
        # float32 products: only the m nonzero terms of each column of S add roundoff, about
        # 1e-7 of E[k] in the final sum (checked against float64 in the tests); the row sums
        # over a subset are taken in float64.
        k = (gram / d + 1.0).pow_(3)
        total = ((k @ b).double() * a).sum(0)
        return total - (k.diagonal().double()[:, None] * a).sum(0) if same else total

    sxx = block_sums(gxx, sx, sx, True) / (m * (m - 1))
    syy = block_sums(gyy, sy, sy, True) / (m * (m - 1))
    sxy = block_sums(gxy, sx, sy, False) / (m * m)
    return sxx + syy - 2.0 * sxy


def mmd_rbf(x, y, bandwidths: Sequence[float] = RBF_BANDWIDTHS) -> float:
    """Unbiased MMD^2 with a sum of RBF kernels (2D metric)."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(len(y), -1)
    return mmd2_unbiased(x, y, lambda a, b: rbf_kernel(a, b, bandwidths))
