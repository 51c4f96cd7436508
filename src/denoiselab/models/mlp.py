"""Networks for 2D points. Signature ``net(x, t, cond=None)``: x (N, D), t (N,) float step index."""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import GuidanceEmbedding, TimeEmbedding, sinusoidal_embedding


class TimeLinear(nn.Module):
    """KAIST CS479 TimeLinear: Linear(x) scaled elementwise by an MLP embedding of t."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.dim_out = dim_out
        self.fc = nn.Linear(dim_in, dim_out)
        self.time_embedding = TimeEmbedding(dim_out)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.time_embedding(t).view(-1, self.dim_out)


class TimeLinearNet(nn.Module):
    """The KAIST assignment's SimpleNet: TimeLinear layers [2, 128, 128, 128, 2] with ReLU between."""

    def __init__(self, dim: int = 2, hidden: tuple[int, ...] = (128, 128, 128), num_classes: int = 0):
        super().__init__()
        dims = [dim, *hidden, dim]
        self.layers = nn.ModuleList(TimeLinear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, t)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class ResidualMLP(nn.Module):
    """The default 2D network: pre-norm residual MLP blocks with the time embedding added to each.

    x -> Linear -> [h + MLP(LN(h) + emb(t))] * depth -> LN -> Linear. Residual blocks let a wide
    net stay well-conditioned, and injecting t in every block (not only at the input) lets one
    net represent very different denoisers at small and large noise.
    """

    def __init__(self, dim: int = 2, width: int = 256, depth: int = 3, freq_dim: int = 64,
                 num_classes: int = 0, input_freqs: int = 0, fourier_t_gate: float = 0.0,
                 linear_skip: bool = False, guidance_embed: bool = False):
        super().__init__()
        self.input_freqs = input_freqs
        self.fourier_t_gate = fourier_t_gate
        d_in = dim * (1 + 2 * input_freqs)
        self.inp = nn.Linear(d_in, width)
        self.freq_dim = freq_dim
        self.temb = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.class_emb = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.guidance_emb = GuidanceEmbedding(width, freq_dim) if guidance_embed else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # A t-dependent linear path from x to the output. Far from the data the optimal
        # denoiser is nearly linear in x_t (eps_hat ~ x_t at large t), which the LayerNorm-ed
        # trunk cannot extrapolate to: without it, samples that start in the tails of N(0, I)
        # end up stranded outside the data under deterministic samplers.
        self.skip_scale = nn.Linear(width, dim) if linear_skip else None
        if self.skip_scale is not None:
            nn.init.zeros_(self.skip_scale.weight)
            nn.init.zeros_(self.skip_scale.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None, w=None) -> torch.Tensor:
        x_in = x
        if self.input_freqs:
            # Fourier features of the input (Tancik et al. 2020) let the net resolve thin 2D
            # structure at small noise. At large noise they only add high-frequency wiggles to a
            # smooth denoiser, which deterministic samplers amplify into stray points, so they
            # are faded out with a Gaussian gate exp(-(t / fourier_t_gate)^2) (0 = no gate).
            f = 2.0 ** torch.arange(self.input_freqs, dtype=x.dtype, device=x.device)
            xf = x[..., None] * f
            feats = torch.cat([torch.sin(xf).flatten(1), torch.cos(xf).flatten(1)], dim=1)
            if self.fourier_t_gate > 0:
                feats = feats * torch.exp(-(t.to(x.dtype) / self.fourier_t_gate) ** 2)[:, None]
            x = torch.cat([x, feats], dim=1)
        # The input layer stays in float32 under autocast: bf16 would round coordinates
        # of size 2-4 to steps of 1/64, coarser than the structure being learned. (Weight
        # dtype, not float32: a net cast to float64 stays float64.)
        with torch.autocast(x.device.type, enabled=False):
            h = self.inp(x.to(self.inp.weight.dtype))
        emb = self.temb(sinusoidal_embedding(t, self.freq_dim))
        if self.class_emb is not None and cond is not None:
            emb = emb + self.class_emb(cond)
        if self.guidance_emb is not None:
            emb = emb + self.guidance_emb(w, x.shape[0], emb)
        for block in self.blocks:
            h = h + block(h + emb)
        out = self.out(self.norm(h))
        if self.skip_scale is not None:
            out = out + self.skip_scale(emb) * x_in
        return out
