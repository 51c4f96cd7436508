"""The DDPM/ADM-style UNet for images. Signature ``net(x, t, cond=None)``: x (N, C, H, W),
t (N,) float step index, cond (N,) int64 class labels, (N, cond_dim) float embeddings (text), or None.

Layout after Ho et al. 2020 (appendix B) and Dhariwal & Nichol 2021 (ADM): per level
``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3x3 conv, the time embedding added
between the two convs, dropout), self-attention at the chosen resolutions, a strided conv
down and a nearest-neighbour upsample + conv up, skip connections from every encoder block,
and a middle of ResBlock-Attention-ResBlock. The final conv and the last conv of each
residual branch start at zero (ADM's ``zero_module``), so a fresh net is the identity on
its skip path and predicts zero, which makes the first steps stable at high learning rates.

Class conditioning: a learned embedding per class plus one "null" class (index
``num_classes``) added to the time embedding. ``cond=None`` or a label equal to the null index
means "unconditional", which is what classifier-free guidance (Ho & Salimans 2022) needs.

Text conditioning (``cond_dim`` > 0): a pooled prompt embedding c (e.g. the 384-d MiniLM sentence
embedding) goes through Linear-SiLU-Linear and is added to the time embedding, as the class
embedding is (GLIDE's pooled-token path, Nichol et al. 2022, sec. 2.3, without the token
attention). ``cond=None`` means the null condition: the buffer ``null_cond``, which training sets
to the empty prompt's embedding, so the network carries its own null and samples unconditionally
without the text encoder.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DenoiselabError
from .embeddings import GuidanceEmbedding, sinusoidal_embedding


def group_count(channels: int, max_groups: int) -> int:
    """The largest group count <= max_groups that divides ``channels`` (GroupNorm needs it)."""
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Linear(emb), GN-SiLU-dropout-conv(zero init), + skip (1x1 conv if widths differ)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(group_count(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, pre-GroupNorm, residual, zero-init output."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise DenoiselabError(f"attention: {channels} channels do not split into {heads} heads; choose heads dividing the width")
        self.heads = heads
        self.norm = nn.GroupNorm(group_count(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (N, heads, HW, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, eq. 1)
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """DDPM/ADM UNet.

    ``ch`` base width; ``ch_mult`` width multiplier per level (len(ch_mult) - 1 halvings, so the
    image side must be divisible by 2^(len - 1)); ``attn_resolutions`` the feature-map sides that
    get self-attention (e.g. (16,) for 32x32 images, as in Ho et al. 2020); ``mid_attn`` attention
    in the middle block; ``num_classes`` > 0 adds the class embedding with a null class.
    ``image_size`` is the side the attention resolutions refer to; other sizes still run.
    ``patch`` > 1 folds patch x patch pixel blocks into channels before the first conv.
    ``value_channel`` appends V = max over the input channels (HSV value) as one more input channel.
    """

    def __init__(self, in_channels: int = 1, out_channels: Optional[int] = None, ch: int = 64,
                 ch_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: Sequence[int] = (), image_size: int = 32, dropout: float = 0.0,
                 heads: int = 4, groups: int = 32, mid_attn: bool = True, num_classes: int = 0,
                 patch: int = 1, channels_last: bool = False, cond_dim: int = 0, cond_norm: bool = False,
                 value_channel: bool = False, guidance_embed: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        levels = len(ch_mult)
        if image_size % (patch * 2 ** (levels - 1)):
            raise DenoiselabError(f"image size {image_size} is not divisible by patch {patch} x 2^{levels - 1} "
                                  f"({levels} levels in ch_mult): choose a size, patch or fewer levels so they divide")
        self.image_size = image_size
        self.patch = patch
        self.levels = levels
        self.num_classes = num_classes
        self.null_class = num_classes
        self.ch = ch
        self.use_channels_last = channels_last
        emb_dim = 4 * ch
        self._build_embeddings(emb_dim, num_classes, cond_dim, cond_norm)
        # A student that takes the guidance scale as an input (``denoiselab distill`` with a
        # guidance range): w joins the time embedding.
        self.guidance_emb = GuidanceEmbedding(emb_dim, ch) if guidance_embed else None
        attn_resolutions = set(int(r) for r in attn_resolutions)

        # value_channel: the HSV value V = max(R, G, B) (Smith 1978) joins the input channels. A
        # stroke drawn in any saturated colour has the same V, so shape is one linear feature of
        # the first conv whatever the hue, where from RGB alone it is a different feature per colour.
        self.value_channel = bool(value_channel)
        self.conv_in = nn.Conv2d((in_channels + self.value_channel) * patch * patch, ch, 3, padding=1)
        blocks = dict(emb_dim=emb_dim, dropout=dropout, heads=heads, groups=groups, attn_resolutions=attn_resolutions)
        skips, c, res = self._build_encoder(ch, ch_mult, num_res_blocks, image_size // patch, **blocks)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout, groups)]
                                 + ([AttentionBlock(c, heads, groups)] if mid_attn else [])
                                 + [ResBlock(c, c, emb_dim, dropout, groups)])
        c = self._build_decoder(ch, ch_mult, num_res_blocks, skips, c, res, **blocks)
        self.norm_out = nn.GroupNorm(group_count(c, groups), c)
        self.conv_out = _zero(nn.Conv2d(c, out_channels * patch * patch, 3, padding=1))
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _build_embeddings(self, emb_dim: int, num_classes: int, cond_dim: int, cond_norm: bool) -> None:
        """The time MLP, and the class embedding (with its null class) or the text-condition MLP."""
        self.time_mlp = nn.Sequential(nn.Linear(self.ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        if num_classes and cond_dim:
            raise DenoiselabError("a UNet takes class labels (num_classes) or embeddings (cond_dim), not both: set one to 0")
        self.cond_dim = cond_dim
        self.cond_mlp = (nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                         if cond_dim else None)
        if cond_dim:
            self.register_buffer("null_cond", torch.zeros(cond_dim))
        self.cond_norm = bool(cond_norm and cond_dim)
        if self.cond_norm:
            # Standardise c with the training captions' mean and RMS (set by set_cond_stats, saved
            # with the weights): sentence embeddings of different captions share most of their
            # direction (cosine about 0.7-0.8 between "a red seven" and "a red three"), so raw they
            # reach the embedding MLP as small differences on a large common part, unlike a class
            # embedding of unit scale. Measured on mnist-text (eps prediction) it moved the digit only
            # from 10.6% to 12.8%: there the eps parameterisation, not the scale, was what limited
            # (`mnist-text` in src/denoiselab/presets/mnist.toml; docs/results/text.md, "Why v prediction").
            self.register_buffer("cond_mean", torch.zeros(cond_dim))
            self.register_buffer("cond_scale", torch.ones(()))

    def _build_encoder(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, res: int, *, emb_dim: int,
                       dropout: float, heads: int, groups: int, attn_resolutions: set[int]) -> tuple[list[int], int, int]:
        """``self.down``: per level, residual blocks (with attention at the chosen sides), then a
        strided conv down but on the last level. Returns the skip widths, the width and the side."""
        self.down = nn.ModuleList()
        skips = [ch]
        c = ch
        for i, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(c, ch * mult, emb_dim, dropout, groups)]
                c = ch * mult
                if res in attn_resolutions:
                    layers.append(AttentionBlock(c, heads, groups))
                self.down.append(nn.ModuleList(layers))
                skips.append(c)
            if i < len(ch_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(c)]))
                skips.append(c)
                res //= 2
        return skips, c, res

    def _build_decoder(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, skips: list[int], c: int, res: int,
                       *, emb_dim: int, dropout: float, heads: int, groups: int, attn_resolutions: set[int]) -> int:
        """``self.up``: per level from the bottom, residual blocks on the encoder's skips (with
        attention at the chosen sides), then an upsample but on the top level. Returns the width."""
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(ch_mult))):
            for j in range(num_res_blocks + 1):
                layers = [ResBlock(c + skips.pop(), ch * mult, emb_dim, dropout, groups)]
                c = ch * mult
                if res in attn_resolutions:
                    layers.append(AttentionBlock(c, heads, groups))
                if i > 0 and j == num_res_blocks:
                    layers.append(Upsample(c))
                    res *= 2
                self.up.append(nn.ModuleList(layers))
        return c

    @torch.no_grad()
    def set_cond_stats(self, embeddings: torch.Tensor) -> None:
        """Mean and 1 / RMS (over every entry) of the centred training-caption embeddings."""
        mean = embeddings.double().mean(0)
        rms = (embeddings.double() - mean).pow(2).mean().sqrt().clamp_min(1e-12)
        self.cond_mean.copy_(mean.to(self.cond_mean.dtype))
        self.cond_scale.copy_((1 / rms).to(self.cond_scale.dtype))

    def embed(self, t: torch.Tensor, cond: Optional[torch.Tensor], n: int, w=None) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(n)
        emb = self.time_mlp(sinusoidal_embedding(t, self.ch))
        if self.guidance_emb is not None:
            emb = emb + self.guidance_emb(w, n, emb)
        if self.class_emb is not None:
            if cond is None:
                cond = torch.full((n,), self.null_class, dtype=torch.long, device=emb.device)
            # Negative labels also mean "no label", so callers can drop labels with -1.
            cond = torch.where(cond < 0, torch.full_like(cond, self.null_class), cond)
            emb = emb + self.class_emb(cond)
        elif self.cond_mlp is not None:
            if cond is None:
                cond = self.null_cond.expand(n, -1)
            if cond.is_floating_point() is False or cond.shape[-1] != self.cond_dim:
                raise DenoiselabError(f"this UNet is conditioned on {self.cond_dim}-d embeddings (a text model), got a "
                                      f"condition of shape {tuple(cond.shape)}: pass a prompt, not a class")
            cond = cond.to(emb.dtype)
            if self.cond_norm:
                cond = (cond - self.cond_mean.to(emb.dtype)) * self.cond_scale.to(emb.dtype)
            emb = emb + self.cond_mlp(cond.expand(n, -1))
        # Every block's embedding projection starts with SiLU (ADM emb_layers); apply it once here.
        return F.silu(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None, w=None) -> torch.Tensor:
        side = self.patch * 2 ** (self.levels - 1)
        if x.ndim != 4 or x.shape[-1] % side or x.shape[-2] % side:
            raise DenoiselabError(f"UNet input of shape {tuple(x.shape)}: expected (N, C, H, W) with H, W divisible by {side}")
        emb = self.embed(t, cond, x.shape[0], w)
        if self.value_channel:
            x = torch.cat([x, x.amax(1, keepdim=True)], dim=1)
        if self.patch > 1:
            # Lossless space-to-depth: the UNet runs at 1/patch resolution with patch^2 x the
            # channels, cutting the cost of the widest maps (Hoogeboom et al. 2023, sec. 3.3).
            x = F.pixel_unshuffle(x, self.patch)
        if self.use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if self.patch > 1:
            out = F.pixel_shuffle(out, self.patch)
        return out.contiguous() if self.use_channels_last else out
