"""A convolutional autoencoder with a KL-regularised latent: the first stage of latent diffusion
(Rombach et al. 2022, sec. 3.1 and appendix G, the "KL-f4" autoencoder), scaled down for a CPU.

| symbol | meaning |
| --- | --- |
| x | an image batch (N, C, H, W) in [-1, 1] |
| f | the downsampling factor, 2^(len(ch_mult) - 1): a 32x32 image has an (H/f)x(W/f) latent |
| mean, logvar | the encoder's diagonal Gaussian posterior q(z given x) = N(mean, exp(logvar)) |
| z | a latent: a draw mean + exp(logvar / 2) eps, or the mean itself |
| latent_scale | 1 / std of the training latents (Rombach et al. 2022, sec. 4.3.2): z * latent_scale has unit variance |

The encoder and decoder follow the latent-diffusion ``Encoder``/``Decoder``: residual blocks of
GroupNorm, SiLU and 3x3 convolutions, a strided convolution to halve the resolution, nearest
upsampling and a convolution to double it, and 1x1 ``quant_conv``/``post_quant_conv`` around the
latent. Their attention blocks are left out: at 8x8 latents and a few hundred thousand weights
the convolutions' receptive field already spans the image.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import DenoiselabError

# log-variance bounds of the posterior, as in latent diffusion's DiagonalGaussianDistribution:
# exp(logvar) stays finite in float32 whatever the untrained encoder outputs.
LOGVAR_RANGE = (-30.0, 20.0)


def _norm(c: int, groups: int) -> nn.GroupNorm:
    g = groups
    while c % g:
        g //= 2
    return nn.GroupNorm(g, c)


class ResnetBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus a (1x1-projected) skip; no time embedding."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c_in, groups), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  _norm(c_out, groups), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class KLAutoencoder(nn.Module):
    """``encode(x) -> (mean, logvar)``, ``decode(z) -> x_hat``; ``forward(x, eps)`` reconstructs
    through a posterior draw (eps None: through the mean) for training.

    ``ch`` channels at full resolution, times ``ch_mult[i]`` at level i; ``len(ch_mult) - 1``
    halvings give f; ``z_channels`` latent channels (4 for KL-f4)."""

    def __init__(self, in_channels: int = 3, z_channels: int = 4, ch: int = 32, ch_mult: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 1, groups: int = 8, image_size: int = 32):
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        self.factor = 2 ** (len(ch_mult) - 1)
        if image_size % self.factor:
            raise DenoiselabError(f"image size {image_size} is not divisible by the downsampling factor {self.factor}: "
                                  "choose a size or fewer ch_mult levels so it divides")
        self.in_channels, self.z_channels = in_channels, z_channels
        widths = [ch * m for m in ch_mult]
        enc: list[nn.Module] = [nn.Conv2d(in_channels, ch, 3, padding=1)]
        c = ch
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(ResnetBlock(c, w, groups))
                c = w
            if i < len(widths) - 1:
                enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        enc += [ResnetBlock(c, c, groups), _norm(c, groups), nn.SiLU(), nn.Conv2d(c, 2 * z_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * z_channels, 1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)
        # The decoder mirrors the encoder with one more residual block per level (as latent diffusion's).
        dec: list[nn.Module] = [nn.Conv2d(z_channels, c, 3, padding=1), ResnetBlock(c, c, groups)]
        for i, w in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                dec.append(ResnetBlock(c, w, groups))
                c = w
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        dec += [_norm(c, groups), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # 0 until fitted on the training images at the end of training (``fit_latent_scale``).
        self.register_buffer("latent_scale", torch.zeros(()))

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """(C, H, W) of an image -> (z_channels, H / f, W / f) of its latent."""
        _, h, w = image_shape
        return self.z_channels, h // self.factor, w // self.factor

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor, eps: Optional[torch.Tensor] = None):
        """(x_hat, mean, logvar): the reconstruction through z = mean + exp(logvar / 2) eps (the
        reparameterisation of Kingma & Welling 2014, eq. 10), or through the mean when eps is None."""
        mean, logvar = self.encode(x)
        z = mean if eps is None else mean + (0.5 * logvar).exp() * eps
        return self.decode(z), mean, logvar

    @torch.no_grad()
    def fit_latent_scale(self, x: torch.Tensor, batch: int = 256) -> float:
        """Set ``latent_scale`` to 1 / std of the posterior means of ``x`` (Rombach et al. 2022,
        sec. 4.3.2, who take one std over every element of a batch of latents), so latent diffusion
        sees unit-variance data. The means, not draws: with the KL weight 1e-6 the posterior std is
        far below the latents' spread, and a cached latent data set is the means."""
        was_training = self.training
        self.eval()
        dev = self.latent_scale.device
        z = torch.cat([self.encode(x[i:i + batch].to(dev))[0].float() for i in range(0, len(x), batch)])
        self.train(was_training)
        std = float(z.std())
        if not std > 0:
            raise DenoiselabError("the encoder maps every image to the same latent: its scale cannot be fitted")
        self.latent_scale.fill_(1.0 / std)
        return 1.0 / std


__all__ = ["LOGVAR_RANGE", "KLAutoencoder", "ResnetBlock"]
