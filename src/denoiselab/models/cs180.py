"""The teaching UNet of Berkeley CS180 project 5, part B, with its named blocks.

For 28x28 inputs with hidden width D (the project's figures):

    x (C, 28, 28) -> ConvBlock(C, D) = e1 (D, 28, 28)
    e1 -> DownBlock(D, D) = e2 (D, 14, 14) -> DownBlock(D, 2D) = e3 (2D, 7, 7)
    e3 -> Flatten (7x7 average pool, GELU) (2D, 1, 1) -> Unflatten (7x7 transposed conv) (2D, 7, 7)
    [u, e3] -> UpBlock(4D, D) (D, 14, 14) -> [., e2] -> UpBlock(2D, D) (D, 28, 28)
    [., e1] -> ConvBlock(2D, D) -> 3x3 conv -> (C, 28, 28)

Time conditioning (part B.2) is additive: FCBlock(1, 2D)(t/T) is added after Unflatten and
FCBlock(1, D)(t/T) after the first UpBlock. Class conditioning (part B.3) scales the same two
places by FCBlock(num_classes, .)(one-hot c); a dropped label is the zero vector, so the scale
becomes FCBlock(0) (the project's p_uncond trick for classifier-free guidance).
With ``time_conditioned=False`` the net ignores t: the single-step denoiser of part B.1.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DenoiselabError


class Conv(nn.Sequential):
    """3x3 conv (stride 1, padding 1), BatchNorm, GELU: keeps the size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.GELU())


class DownConv(nn.Sequential):
    """3x3 conv with stride 2, BatchNorm, GELU: halves the size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.GELU())


class UpConv(nn.Sequential):
    """4x4 transposed conv with stride 2, BatchNorm, GELU: doubles the size."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.GELU())


class Flatten(nn.Sequential):
    """Average pool over the whole 7x7 map, GELU: (2D, 7, 7) -> (2D, 1, 1)."""

    def __init__(self, size: int):
        super().__init__(nn.AvgPool2d(size), nn.GELU())


class Unflatten(nn.Sequential):
    """Transposed conv with kernel = stride = 7, BatchNorm, GELU: (2D, 1, 1) -> (2D, 7, 7)."""

    def __init__(self, channels: int, size: int):
        super().__init__(nn.ConvTranspose2d(channels, channels, size, size, 0), nn.BatchNorm2d(channels), nn.GELU())


class ConvBlock(nn.Sequential):
    """Two Conv layers."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(Conv(c_in, c_out), Conv(c_out, c_out))


class DownBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(DownConv(c_in, c_out), ConvBlock(c_out, c_out))


class UpBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(UpConv(c_in, c_out), ConvBlock(c_out, c_out))


class FCBlock(nn.Sequential):
    """Linear, GELU, Linear: embeds t/T (or a one-hot class) to a per-channel vector."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class CS180UNet(nn.Module):
    def __init__(self, in_channels: int = 1, D: int = 64, image_size: int = 28, T: int = 300,
                 time_conditioned: bool = True, num_classes: int = 0):
        super().__init__()
        if image_size % 4:
            raise DenoiselabError(f"the CS180 UNet halves the image twice: image size {image_size} must be divisible by 4")
        self.T = T
        self.time_conditioned = time_conditioned
        self.num_classes = num_classes
        self.null_class = num_classes
        bottom = image_size // 4
        self.conv_in = ConvBlock(in_channels, D)
        self.down1 = DownBlock(D, D)
        self.down2 = DownBlock(D, 2 * D)
        self.flatten = Flatten(bottom)
        self.unflatten = Unflatten(2 * D, bottom)
        self.up1 = UpBlock(4 * D, D)
        self.up2 = UpBlock(2 * D, D)
        self.conv_mid = ConvBlock(2 * D, D)
        self.conv_out = nn.Conv2d(D, in_channels, 3, 1, 1)
        if time_conditioned:
            self.fc1_t, self.fc2_t = FCBlock(1, 2 * D), FCBlock(1, D)
        if num_classes:
            self.fc1_c, self.fc2_c = FCBlock(num_classes, 2 * D), FCBlock(num_classes, D)

    def forward(self, x: torch.Tensor, t: Optional[torch.Tensor] = None, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        e1 = self.conv_in(x)
        e2 = self.down1(e1)
        e3 = self.down2(e2)
        u = self.unflatten(self.flatten(e3))
        scale1 = scale2 = 1.0
        if self.num_classes:
            if cond is None:
                c = x.new_zeros(x.shape[0], self.num_classes)
            else:
                # Labels < 0 or == num_classes are "dropped": the zero vector.
                keep = (cond >= 0) & (cond < self.num_classes)
                c = F.one_hot(cond.clamp(0, self.num_classes - 1), self.num_classes).to(x.dtype) * keep[:, None].to(x.dtype)
            scale1, scale2 = self.fc1_c(c)[:, :, None, None], self.fc2_c(c)[:, :, None, None]
        shift1 = shift2 = 0.0
        if self.time_conditioned:
            if t is None:
                raise DenoiselabError("the time-conditioned CS180 UNet needs t")
            tn = (torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]) / self.T)[:, None]
            shift1, shift2 = self.fc1_t(tn)[:, :, None, None], self.fc2_t(tn)[:, :, None, None]
        u = scale1 * u + shift1
        h = self.up1(torch.cat([u, e3], dim=1))
        h = scale2 * h + shift2
        h = self.up2(torch.cat([h, e2], dim=1))
        h = self.conv_mid(torch.cat([h, e1], dim=1))
        return self.conv_out(h)
