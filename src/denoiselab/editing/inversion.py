"""DDIM inversion (with fixed-point re-evaluation), reconstruction from inverted noise, and
interpolation between two inverted noises."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import DenoiselabError
from ..samplers.inversion import ddim_invert
from .core import EditResult, Shots, full_grid, per_sample_cond

F64 = torch.float64


def inversion_grid(denoiser, steps: int, grid: Optional[str] = None, grid_opts: dict | None = None) -> torch.Tensor:
    """The grid that inversion encodes along and reconstruction decodes along (DDIM's default)."""
    return full_grid(denoiser, "ddim", steps, grid, grid_opts)


@torch.no_grad()
def invert(denoiser, x0: torch.Tensor, *, steps: int = 50, grid: Optional[str] = None, grid_opts: dict | None = None,
           cond=None, fixed_point_iters: int = 1, frames: int = 25) -> EditResult:
    """DDIM inversion (Song et al. 2021, sec. 4.3; ``samplers.inversion``): x0 -> x_T along the
    deterministic ODE; ``fixed_point_iters`` re-evaluates each step at its end point (Pan et al.
    2023), which makes decoding with :func:`reconstruct` return the input closely."""
    timesteps = inversion_grid(denoiser, steps, grid, grid_opts)
    shots = Shots(steps, frames)
    z = ddim_invert(denoiser, x0, timesteps, cond=per_sample_cond(cond, len(x0)),
                    callback=lambda d: shots({**d, "x0_hat": x0}), fixed_point_iters=fixed_point_iters)
    shots.add(timesteps[0].item(), z, x0)
    return EditResult(z, shots.shots, {"input": x0, "noise": z.clamp(-3, 3) / 3}, {})


@torch.no_grad()
def reconstruct(denoiser, x_T: torch.Tensor, *, steps: int = 50, grid: Optional[str] = None,
                grid_opts: dict | None = None, cond=None, frames: int = 25) -> EditResult:
    """Decode an inverted x_T with deterministic DDIM (eta = 0) on the inversion's grid."""
    from ..samplers import sample_ddim

    timesteps = inversion_grid(denoiser, steps, grid, grid_opts)
    shots = Shots(steps, frames)
    x = sample_ddim(denoiser, x_T, timesteps, cond=per_sample_cond(cond, len(x_T)), callback=shots)
    shots.add(-1, x, x)
    return EditResult(x, shots.shots, {"noise": x_T.clamp(-3, 3) / 3, "reconstruction": x}, {})


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation per sample (Shoemake 1985; the x_T interpolation of Song et al.
    2021, sec. 5.4): keeps the norm of Gaussian noise where a straight line would shrink it."""
    a, b = z0.flatten(1).double(), z1.flatten(1).double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]
    sin = torch.sin(theta)
    lin = (1 - alpha) * a + alpha * b  # where the two are (anti)parallel, slerp degenerates to a line
    sph = (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / sin.clamp_min(1e-12)
    return torch.where(sin > 1e-6, sph, lin).reshape(z0.shape).to(z0.dtype)


@torch.no_grad()
def interpolate(denoiser, xa: torch.Tensor, xb: torch.Tensor, *, frames: int = 8, steps: int = 50,
                grid: Optional[str] = None, grid_opts: dict | None = None, cond=None,
                fixed_point_iters: int = 1) -> EditResult:
    """Invert both images, slerp between their noises at ``frames`` points (ends included) and
    decode each. ``x`` is pair-major: x[i * frames + f] is pair i at alpha = f / (frames - 1)."""
    if frames < 2:
        raise DenoiselabError(f"interpolation needs at least 2 frames, got {frames}")
    if xa.shape != xb.shape:
        raise DenoiselabError(f"the two inputs hold {len(xa)} and {len(xb)} images: give the same number")
    n = len(xa)
    zs = invert(denoiser, torch.cat([xa, xb]), steps=steps, grid=grid, grid_opts=grid_opts,
                cond=None if cond is None else per_sample_cond(cond, 2 * n), fixed_point_iters=fixed_point_iters).x
    za, zb = zs[:n], zs[n:]
    alphas = [f / (frames - 1) for f in range(frames)]
    z = torch.stack([slerp(za, zb, al) for al in alphas], dim=1).reshape(n * frames, *xa.shape[1:])
    x = reconstruct(denoiser, z, steps=steps, grid=grid, grid_opts=grid_opts,
                    cond=None if cond is None else per_sample_cond(cond, n * frames).reshape(-1)).x
    strip = x.reshape(n, frames, *xa.shape[1:])
    shots = [(f, strip[:, f], strip[:, f]) for f in range(frames)] + [(-1, strip[:, -1], strip[:, -1])]
    rows = {"A": xa, **{f"{al:.2f}": strip[:, f] for f, al in enumerate(alphas)}, "B": xb}
    return EditResult(x, shots, rows, {"alphas": alphas})
