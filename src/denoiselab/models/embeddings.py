"""Time embeddings shared by every network."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of (possibly fractional) t: [cos(t f_k), sin(t f_k)],
    f_k = max_period^(-k / (dim/2)) (Vaswani et al. 2017, sec. 3.5; used by Ho et al. 2020)."""
    half = dim // 2
    # float32 unless t is float64 (a network run in double precision, e.g. to compare solvers).
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = t.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP (Linear, SiLU, Linear)."""

    def __init__(self, dim_out: int, freq_dim: int = 256, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim_out
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, dim_out))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t[None]
        return self.mlp(sinusoidal_embedding(t, self.freq_dim))


class GuidanceEmbedding(nn.Module):
    """An embedding of the guidance scale w, added to a network's time embedding: a student that
    takes w as an input learns every guided flow of its teacher at once (Meng et al. 2023, sec. 3.1:
    "w-conditioned" students; Luo et al. 2023, latent consistency models, eq. 9).

    Sinusoidal features of 100 w (scales 1 to 10 then span the range the time features were made
    for), then Linear, SiLU, Linear. The last layer starts at zero, so a student built from its
    teacher's weights starts as the teacher's conditional model at every w. ``w`` None is w = 1.
    """

    SCALE = 100.0

    def __init__(self, dim_out: int, freq_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim_out), nn.SiLU(), nn.Linear(dim_out, dim_out))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w, n: int, like: torch.Tensor) -> torch.Tensor:
        w = torch.ones(n, device=like.device) if w is None else torch.as_tensor(w, device=like.device)
        w = w.expand(n) if w.ndim == 0 else w
        return self.mlp(sinusoidal_embedding(w.to(like.dtype) * self.SCALE, self.freq_dim).to(like.dtype))
