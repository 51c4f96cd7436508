"""Where sampling starts: the Gaussian with the first two moments of the noised data.

The forward process gives x_t = a x0 + s eps, so the marginal at the grid's first point has mean
a E[x0] and covariance a^2 Cov[x0] + s^2 I (Ho et al. 2020, eq. 4; Kingma et al. 2021, eq. 1).
Drawing x_T ~ N(0, I) matches them only when a = 0. A sigma grid that starts at a moderate noise
level leaves a mismatch: at the `mnist` preset's sigma_max = 10 (a = 0.0995, s = 0.995) the mean
digit alone is a ||E[x0]|| = 2.25 away from N(0, I)'s mean, 2.5 nats of KL divergence, and a
deterministic sampler carries that error all the way to its samples. Stochastic samplers forget
where they started; ODE solvers do not.

``DataMoments`` holds the data's mean and its covariance in probabilistic-PCA form (Tipping &
Bishop 1999, eqs. 7-8): the ``k`` leading principal directions U with their variances lambda,
and the mean of the remaining variances rho for every other direction,

    Cov[x0] ~= U diag(lambda) U^T + rho (I - U U^T).

``draw(z, a, s)`` maps standard noise z to the matching start exactly for that covariance:

    x_T = a mu + c z + U ((sqrt(a^2 lambda + s^2) - c) * (U^T z)),   c = sqrt(a^2 rho + s^2),

a fixed linear map of the same z, so sample i still depends only on (seed, i).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import DenoiselabError

PREFIX = "moments."   # checkpoint tensor names: moments.mean, moments.basis, moments.var, moments.rest
MAX_COMPONENTS = 64   # principal directions kept (MNIST: 64 hold 86% of the pixel variance)
MAX_ROWS = 10_000     # samples the moments are fitted on
EXACT_BELOW = 1024    # a full SVD while the data has at most this many dimensions (or rows)
MAX_ELEMENTS = 50_000_000  # values the fit reads at most (200 MB in float32): 1,017 rows at 128x128x3


@dataclass
class DataMoments:
    mean: torch.Tensor    # (d,) E[x0], flattened
    basis: torch.Tensor   # (d, k) leading principal directions, orthonormal columns
    var: torch.Tensor     # (k,) their variances
    rest: torch.Tensor    # () mean variance of the other d - k directions (0 when k = d)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def draw(self, z: torch.Tensor, a: float, s: float) -> torch.Tensor:
        """The start for standard noise ``z`` (n, *shape) at a point with scales (a, s):
        mean a mu, covariance a^2 Cov[x0] + s^2 I (module docstring)."""
        if z[0].numel() != self.dim:
            raise DenoiselabError(f"the run's data moments have {self.dim} dimensions but samples have "
                                  f"{z[0].numel()}: sample with --start gaussian")
        flat = z.reshape(z.shape[0], -1).double()
        mean, basis, var, rest = (t.to(flat.device, torch.float64) for t in (self.mean, self.basis, self.var, self.rest))
        c = torch.sqrt(a * a * rest + s * s)
        scale = torch.sqrt(a * a * var + s * s) - c
        x = a * mean + c * flat + ((flat @ basis) * scale) @ basis.T
        return x.to(z.dtype).reshape(z.shape)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v.float().contiguous() for k, v in
                (("mean", self.mean), ("basis", self.basis), ("var", self.var), ("rest", self.rest))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Optional["DataMoments"]:
        """The moments stored in a checkpoint's tensors (names without the prefix), or None."""
        if not all(k in tensors for k in ("mean", "basis", "var", "rest")):
            return None
        return cls(tensors["mean"].double(), tensors["basis"].double(), tensors["var"].double(),
                   tensors["rest"].double().reshape(()))


def fit_moments(x: torch.Tensor, k: int = MAX_COMPONENTS, max_rows: int = MAX_ROWS) -> DataMoments:
    """Mean and probabilistic-PCA covariance of the data ``x`` (n, *shape); at most ``max_rows``
    evenly spaced rows are used (fewer for large images: at most MAX_ELEMENTS values in all), so
    it is deterministic, fast and small in memory on any data set."""
    x = x.detach().cpu()
    n = x.shape[0]
    if n < 2:
        raise DenoiselabError(f"fitting the data's moments needs at least 2 samples, got {n}")
    d = x[0].numel()
    keep = max(2, min(max_rows, MAX_ELEMENTS // d))
    if n > keep:
        x = x[torch.linspace(0, n - 1, keep).long()]
    # float64 where it is cheap (MNIST: 5,000 x 784); float32 for large images.
    flat = x.reshape(x.shape[0], -1).to(torch.float64 if x.shape[0] * d <= MAX_ELEMENTS // 4 else torch.float32)
    mean = flat.mean(0)
    centred = flat - mean
    k = max(1, min(k, d, flat.shape[0] - 1))
    rows = flat.shape[0] - 1
    total = centred.pow(2).sum() / rows
    if min(d, rows) <= EXACT_BELOW:
        # Singular values of the centred data: variances sv^2 / (n - 1) along the right singular vectors.
        _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
        basis = vh[:k].T
    else:
        # Large images: a randomized SVD (Halko et al. 2011) of the leading k, with a fixed seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, sv, basis = torch.svd_lowrank(centred, q=min(k + 10, d), niter=4, M=None)
        basis = basis[:, :k]
    var = (sv ** 2 / rows)[:k]
    rest = ((total - var.sum()) / (d - k)).clamp_min(0.0) if d > k else torch.zeros(())
    return DataMoments(*(t.double() for t in (mean, basis.contiguous(), var, rest.reshape(()))))
