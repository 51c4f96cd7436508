"""One entry point that builds the grid and the per-sample noise, then runs a named sampler."""

from __future__ import annotations

from typing import Optional

import torch

from ..denoiser import DenoiserWrapper
from ..device import autocast, autocast_dtype, module_device
from ..rng import SampleNoise
from .common import initial_noise, scales_at
from .grids import default_grid, time_grid


class CountingDenoiser(DenoiserWrapper):
    """Wraps a denoiser and counts network evaluations (NFE) per sample batch; with an autocast
    ``dtype`` the denoiser runs under it and its outputs come back in x's dtype, so the solver
    only ever sees float32. Both calls, clipped and ``unclipped``, count and run under autocast."""

    def __init__(self, denoiser, dtype: Optional[torch.dtype] = None):
        super().__init__(denoiser)
        self.nfe = 0
        self.dtype = dtype

    def _evaluate(self, fn, x, t, cond):
        self.nfe += 1
        if self.dtype is None:
            return fn(x, t, cond)
        with autocast(x.device, self.dtype):
            out = fn(x, t, cond)
        return tuple(o.to(x.dtype) if torch.is_tensor(o) else o for o in out)

    def unclipped(self, x, t, cond=None):
        return self._evaluate(self.inner.unclipped, x, t, cond)

    def __call__(self, x, t, cond=None):
        # The inner call itself, not the base's clip of ``unclipped``: a plain callable denoiser
        # has no clip_pair, and the clip stays inside the autocast region.
        return self._evaluate(self.inner, x, t, cond)


@torch.no_grad()
def generate(denoiser, num: int, sample_shape: tuple[int, ...], *, sampler: str = "ddpm", steps: int = 1000,
             seed: int = 0, spacing: Optional[str] = None, grid: Optional[str] = None, grid_opts: Optional[dict] = None,
             cond: Optional[torch.Tensor] = None, callback=None, batch_size: int = 0, offset: int = 0,
             progress: bool = False, device=None, precision: str = "none", start=None,
             **opts) -> tuple[torch.Tensor, int]:
    """Draw ``num`` samples; returns (samples, NFE per sample). Sample i depends only on (seed, offset + i).

    ``grid`` names the time grid (see ``grids.GRIDS``; ``spacing`` is its older name for the
    discrete spacings); None picks the sampler's default (``grids.default_grid``). ``steps``
    counts solver steps, i.e. grid points. ``batch_size`` bounds memory; batching never changes
    the result.

    The sampler runs on the device of the denoiser's network (``device`` overrides it); the
    noise is drawn on the CPU (``rng.SampleNoise``) and moved, so sample i is the same on every
    device up to float rounding. The samples come back on the CPU. ``precision`` is the network's
    autocast (none, bf16, auto, fp16): the solver's arithmetic and the samples stay float32.

    ``start``: None starts from x_T ~ N(0, I); a ``start.DataMoments`` starts from the Gaussian
    with the noised data's mean and covariance at the grid's first point (same noise, mapped).
    """
    # Imported at call time: the package that holds the registry may import this module.
    from . import get_sampler

    fn = get_sampler(sampler)
    grid = grid or spacing or default_grid(sampler, denoiser)
    timesteps = time_grid(denoiser, grid, steps, **(grid_opts or {}))
    first = float(timesteps[0])
    device = torch.device(device) if device is not None else module_device(denoiser)
    counting = CountingDenoiser(denoiser, autocast_dtype(precision, device))
    batch_size = batch_size or num
    bar, callback = _progress(progress, callback, len(timesteps) * -(-num // batch_size), f"{sampler} {steps}")
    outs = []
    try:
        for lo in range(0, num, batch_size):
            n = min(batch_size, num - lo)
            noise = SampleNoise(seed, n, offset + lo)
            x_T = start_point(denoiser, noise, n, sample_shape, start, first).to(device)
            c = cond[lo : lo + n].to(device) if cond is not None else None
            counting.nfe = 0
            outs.append(fn(counting, x_T, timesteps, noise=noise, cond=c, callback=callback, **opts).cpu())
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(outs), counting.nfe


def start_point(denoiser, noise: SampleNoise, n: int, sample_shape, start, first: float) -> torch.Tensor:
    """x_T of n samples from their own noise streams: N(0, I), or with ``start`` (DataMoments) the
    Gaussian with the noised data's mean and covariance at the grid's first time ``first``."""
    x_T = initial_noise(noise, n, sample_shape)
    return x_T if start is None else start.draw(x_T, *scales_at(denoiser, first))


def _progress(progress: bool, callback, total: int, desc: str):
    """A progress bar ticked once per solver step (every sampler reports each step through the
    callback). It shows only if sampling lasts over two seconds, so short calls stay quiet."""
    if not progress:
        return None, callback
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", delay=2.0, leave=False, dynamic_ncols=True)

    def tick(d: dict) -> None:
        bar.update(1)
        if callback is not None:
            callback(d)

    return bar, tick
