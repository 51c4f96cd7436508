"""Time grids over the discrete steps of a trained model, built outside the samplers and passed in.

All grids are descending int64 tensors of step indices in [0, T-1]; the sampler then goes from
each entry to the next and finally to clean data (index -1).
"""

from __future__ import annotations

import torch

from ..errors import DenoiselabError

SPACINGS = ("leading", "trailing", "linspace")


def discrete_timesteps(T: int, steps: int, spacing: str = "leading") -> torch.Tensor:
    """Subsequence of ``steps`` indices out of ``T`` (the spacings of Lin et al. 2024, table 2).

    leading:  0, T/steps, 2T/steps, ... reversed (DDIM, KAIST: 980, 960, ..., 0 for 50 of 1000)
    trailing: T-1, T-1-T/steps, ... (always starts at the last step)
    linspace: round(linspace(0, T-1, steps)) reversed
    """
    if not 1 <= steps <= T:
        raise DenoiselabError(f"steps must be between 1 and the model's T = {T}, got {steps}")
    if spacing == "leading":
        ts = torch.arange(steps, dtype=torch.int64) * (T // steps)
    elif spacing == "trailing":
        ts = torch.round(torch.arange(T, 0, -T / steps, dtype=torch.float64)).to(torch.int64) - 1
        ts = ts.flip(0)
    elif spacing == "linspace":
        ts = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).to(torch.int64)
    else:
        raise DenoiselabError(f"unknown timestep spacing {spacing!r}: choose one of {', '.join(SPACINGS)}")
    ts = torch.unique(ts.clamp(0, T - 1))
    return ts.flip(0)
