"""Composite denoisers: several conditioned estimates of one x_t combined into one (x0_hat, eps_hat).

Both are denoiser -> denoiser wrappers, like the guidance wrappers, so every sampler draws
anagrams and hybrids unchanged. Each inner call may itself be classifier-free guided: pass a
guided denoiser as ``inner``. The combinations are linear and the maps orthogonal, so
x0_hat and eps_hat stay consistent (x_t = a x0_hat + s eps_hat) when both are combined alike;
the unclipped estimates are combined and the x0 clip applied once (``denoiser.DenoiserWrapper``).

- Visual anagrams (Geng et al. 2024, sec. 3.1, eq. 2 / Algorithm 1):
    eps_hat = (1/K) sum_i V_i^-1( eps_theta(V_i x_t, t, c_i) ).
- Factorized diffusion, hybrid images (Geng et al. 2024b, "Factorized Diffusion"; CS180 A.1.9):
    eps_hat = f_lowpass(eps_theta(x_t, t, c_low)) + f_highpass(eps_theta(x_t, t, c_high)),
  with a Gaussian low-pass (kernel 33, sigma 2 at 64 px, scaled to the image) and
  f_highpass = identity - f_lowpass, so the two filters sum to the identity exactly.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..denoiser import DenoiserWrapper
from ..errors import DenoiselabError
from .views import View

# CS180 project 5, A.1.9: a Gaussian of kernel 33 and sigma 2 on 64 x 64 DeepFloyd images.
HYBRID_KERNEL_AT_64 = 33
HYBRID_SIGMA_AT_64 = 2.0


def hybrid_filter(side: int) -> tuple[int, float]:
    """(kernel size, sigma) of the hybrid low-pass for images of this side: scaled from 64 px,
    the kernel kept odd and at least 3."""
    k = max(3, int(round(HYBRID_KERNEL_AT_64 * side / 64)))
    return (k if k % 2 else k + 1), HYBRID_SIGMA_AT_64 * side / 64


def gaussian_kernel(size: int, sigma: float, dtype=torch.float32) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), reflecting at the borders (as torchvision's
    gaussian_blur, which CS180 uses); replicate where the image is too small to reflect."""
    c = x.shape[1]
    k = gaussian_kernel(size, sigma, x.dtype)
    pad = size // 2
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    y = F.pad(x, (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c)


def lowpass(x: torch.Tensor) -> torch.Tensor:
    size, sigma = hybrid_filter(x.shape[-1])
    return gaussian_blur(x, size, sigma)


def highpass(x: torch.Tensor) -> torch.Tensor:
    """identity - lowpass, so lowpass(x) + highpass(x) == x."""
    return x - lowpass(x)


def _stack_cond(conds: Sequence[Optional[torch.Tensor]], n: int) -> Optional[torch.Tensor]:
    """One cond for the stacked batch; None stays None only when every part is None
    (a part without a label gets -1, "no label", on a conditional model)."""
    if all(c is None for c in conds):
        return None
    parts = [c if c is not None else torch.full((n,), -1, dtype=torch.int64) for c in conds]
    return torch.cat(parts)


def _repeat_t(t, n: int, k: int):
    t = torch.as_tensor(t)
    return t.repeat(k) if t.ndim and t.numel() == n else t


class AnagramDenoiser(DenoiserWrapper):
    """Geng et al. 2024, eq. 2: the views' estimates mapped back and averaged. ``conds[i]`` is
    the condition of view i (None: unconditional); the views run as one batch."""

    def __init__(self, inner, views: Sequence[View], conds: Sequence[Optional[torch.Tensor]]):
        super().__init__(inner)
        if len(views) != len(conds) or len(views) < 1:
            raise DenoiselabError("an anagram needs one condition per view")
        self.views = list(views)
        self.conds = list(conds)

    def unclipped(self, x: torch.Tensor, t, cond=None):
        n, k = x.shape[0], len(self.views)
        xs = torch.cat([v.apply(x) for v in self.views])
        x0s, epss = self.inner.unclipped(xs, _repeat_t(t, n, k), _stack_cond(self.conds, n))
        x0 = sum(v.inverse(x0s[i * n:(i + 1) * n]) for i, v in enumerate(self.views)) / k
        eps = sum(v.inverse(epss[i * n:(i + 1) * n]) for i, v in enumerate(self.views)) / k
        return x0, eps


class HybridDenoiser(DenoiserWrapper):
    """Factorized diffusion: low frequencies of the estimate under ``low_cond``, high frequencies
    under ``high_cond`` (CS180 A.1.9: eps = f_lowpass(eps_1) + f_highpass(eps_2))."""

    def __init__(self, inner, low_cond: Optional[torch.Tensor], high_cond: Optional[torch.Tensor]):
        super().__init__(inner)
        self.low_cond, self.high_cond = low_cond, high_cond

    def unclipped(self, x: torch.Tensor, t, cond=None):
        n = x.shape[0]
        x0s, epss = self.inner.unclipped(torch.cat([x, x]), _repeat_t(t, n, 2), _stack_cond([self.low_cond, self.high_cond], n))
        x0 = lowpass(x0s[:n]) + highpass(x0s[n:])
        eps = lowpass(epss[:n]) + highpass(epss[n:])
        return x0, eps
