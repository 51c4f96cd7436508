"""Frechet distance between Gaussians fitted to features (FID when the features are Inception's).

| symbol | meaning |
| --- | --- |
| ``mu1, mu2`` | feature means (D,) |
| ``sigma1, sigma2`` | feature covariances (D, D), symmetric positive semi-definite |
| ``A`` | sqrt(sigma1), the PSD square root from the eigen-decomposition |
| ``M`` | A sigma2 A, symmetric PSD; tr sqrt(sigma1 sigma2) = tr sqrt(M) |

Heusel et al. 2017 (TTUR), the definition of FID: the squared 2-Wasserstein distance between Gaussians
(Dowson & Landau 1982):

    d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2}).

Why not ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` as the usual implementations do: the product
of two PSD matrices is not symmetric, so a general (Schur) square root of it is ill-posed when
the covariances are singular (fewer samples than dimensions, duplicated images) and returns
complex or non-finite values, and the FID can come out negative. sigma1 sigma2 is similar to
M = A sigma2 A (M = A^{-1} (sigma1 sigma2) A when A is invertible, and the eigenvalues agree in
the limit otherwise), so tr sqrt(sigma1 sigma2) = sum_i sqrt(lambda_i(M)). M is symmetric, its
eigenvalues come from a symmetric eigensolver (always real), and the ones that roundoff pushes
below zero are clipped: the result is real and finite for every PSD input.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ..errors import DenoiselabError


def _as64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a, dtype=torch.float64)


@contextmanager
def single_thread():
    """One BLAS/LAPACK thread inside the block. Why: the threaded symmetric eigensolver spins at its
    barriers when the cores are shared; measured on a busy 2-core machine, eigh of a 512 x 512
    matrix took 14 s with 2 threads and 0.08 s with 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def gaussian_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (divisor N - 1, as numpy.cov) of (N, D) features, in float64."""
    f = _as64(features)
    if f.ndim != 2 or len(f) < 2:
        raise DenoiselabError(f"Frechet distance needs features of shape (N >= 2, D), got {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, (c.T @ c) / (len(f) - 1)


def sqrtm_psd(sigma) -> torch.Tensor:
    """Symmetric PSD square root via eigh, eigenvalues clipped at 0 (roundoff makes some slightly negative)."""
    s = _as64(sigma)
    s = 0.5 * (s + s.T)
    with single_thread():
        w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(sigma1, sigma2, sqrt_sigma1: torch.Tensor | None = None) -> float:
    """tr((sigma1 sigma2)^{1/2}) = sum sqrt(eig(A sigma2 A)), A = sqrt(sigma1). Pass ``sqrt_sigma1``
    to reuse A when sigma1 is fixed (reference statistics, bootstrap)."""
    a = sqrt_sigma1 if sqrt_sigma1 is not None else sqrtm_psd(sigma1)
    m = a @ _as64(sigma2) @ a
    m = 0.5 * (m + m.T)
    with single_thread():
        w = torch.linalg.eigvalsh(m)
    return float(w.clamp_min(0).sqrt().sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma1: torch.Tensor | None = None) -> float:
    """The FID formula of Heusel et al. 2017, in float64; finite and >= 0 for every finite PSD input."""
    mu1, mu2, sigma1, sigma2 = _as64(mu1), _as64(mu2), _as64(sigma1), _as64(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise DenoiselabError(f"Frechet distance needs matching statistics, got means {tuple(mu1.shape)} and "
                              f"{tuple(mu2.shape)}, covariances {tuple(sigma1.shape)} and {tuple(sigma2.shape)}: "
                              "compute both with the same feature network")
    for name, t in (("mean", mu1), ("mean", mu2), ("covariance", sigma1), ("covariance", sigma2)):
        if not torch.isfinite(t).all():
            raise DenoiselabError(f"feature {name} contains NaN or inf: check the samples and the feature network")
    diff = mu1 - mu2
    d2 = float(diff @ diff) + float(torch.trace(sigma1)) + float(torch.trace(sigma2)) \
        - 2.0 * trace_sqrt_product(sigma1, sigma2, sqrt_sigma1)
    # The exact value is a squared distance; what is left below 0 is roundoff.
    return max(d2, 0.0)


def frechet_distance_features(f1, f2) -> float:
    """Frechet distance between Gaussians fitted to two feature arrays (N1, D) and (N2, D)."""
    mu1, s1 = gaussian_stats(f1)
    mu2, s2 = gaussian_stats(f2)
    return frechet_distance(mu1, s1, mu2, s2)
