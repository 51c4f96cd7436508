"""A noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021, sec. 4).

Signature ``net(x_t, t, cond=None) -> logits`` (cond is ignored: it is the label being predicted).
It is the encoder half of the DDPM/ADM UNet (``models.unet``): the same residual blocks with
the time embedding, the same attention and downsampling, then GroupNorm, SiLU, a global average
pool and a linear head. Dhariwal & Nichol use the UNet's downsampling trunk with an attention
pool at 8x8; an average pool keeps it small enough for a CPU.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DenoiselabError
from .embeddings import sinusoidal_embedding
from .unet import AttentionBlock, Downsample, ResBlock, group_count


class NoiseAwareClassifier(nn.Module):
    """``ch``, ``ch_mult``, ``num_res_blocks``, ``attn_resolutions``, ``patch``, ``groups``: as the UNet's."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, ch: int = 32, ch_mult: Sequence[int] = (1, 2),
                 num_res_blocks: int = 1, attn_resolutions: Sequence[int] = (), image_size: int = 28,
                 dropout: float = 0.0, heads: int = 4, groups: int = 8, patch: int = 1):
        super().__init__()
        levels = len(ch_mult)
        if num_classes < 2:
            raise DenoiselabError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
        if image_size % (patch * 2 ** (levels - 1)):
            raise DenoiselabError(f"image size {image_size} is not divisible by patch {patch} x 2^{levels - 1}: "
                                  "choose a size, patch or fewer levels so they divide")
        self.ch, self.patch, self.num_classes = ch, patch, num_classes
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels * patch * patch, ch, 3, padding=1)
        attn_resolutions = set(int(r) for r in attn_resolutions)
        self.blocks = nn.ModuleList()
        c, res = ch, image_size // patch
        for i, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.blocks.append(ResBlock(c, ch * mult, emb_dim, dropout, groups))
                c = ch * mult
                if res in attn_resolutions:
                    self.blocks.append(AttentionBlock(c, heads, groups))
            if i < levels - 1:
                self.blocks.append(Downsample(c))
                res //= 2
        self.blocks.append(ResBlock(c, c, emb_dim, dropout, groups))
        self.norm_out = nn.GroupNorm(group_count(c, groups), c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = F.silu(self.time_mlp(sinusoidal_embedding(t, self.ch)))
        if self.patch > 1:
            x = F.pixel_unshuffle(x, self.patch)
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))
