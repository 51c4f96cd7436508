"""Per-sample, batch-size-independent Gaussian noise.

Sample i of a run depends only on (seed, i): the noise it receives at every step is a pure
function of (seed, i, stream, element index), computed by a counter-based hash. So the first
16 samples of a 2048-sample run equal a 16-sample run with the same seed, and a sample can be
reproduced alone. The hash is the "lowbias32" integer mixer (C. Wellons, 2018) on 32-bit lanes
held in int64 so that no product overflows; normals come from Box-Muller.
"""

from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    # (x * m) mod 2^32 with x < 2^32, split so every partial product fits in a signed int64.
    lo = x * (m & 0xFFFF)
    hi = ((x * (m >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def _key(seed: int, stream: int) -> int:
    k = hash32(torch.tensor([seed & _M32], dtype=torch.int64))
    k = hash32(k ^ hash32(torch.tensor([(seed >> 32) & _M32], dtype=torch.int64)))
    k = hash32(k ^ hash32(torch.tensor([stream & _M32], dtype=torch.int64) + 0x9E3779B9))
    return int(k.item())


class SampleNoise:
    """Gaussian noise for a batch of samples, each with its own counter-based stream.

    ``seed`` is the run seed; ``offset`` is the index of the first sample of this batch, so
    sampling in chunks gives the same result as sampling at once.
    """

    def __init__(self, seed: int, num: int, offset: int = 0):
        self.seed = int(seed)
        self.num = int(num)
        self.offset = int(offset)

    def randn(self, stream: int, sample_shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
        n_el = int(math.prod(sample_shape))
        n_pairs = (n_el + 1) // 2
        key = _key(self.seed, stream)
        idx = torch.arange(self.offset, self.offset + self.num, dtype=torch.int64)
        sample_key = hash32(idx ^ key)[:, None]  # one key per sample
        ctr = torch.arange(2 * n_pairs, dtype=torch.int64)[None, :]
        # One round of the mixer over (sample key + counter * odd constant); the sample keys are
        # themselves hashed, so streams of neighbouring samples do not overlap.
        bits = hash32(sample_key + ctr * 0x632BE5AB)
        # 24-bit uniforms in (0, 1): never exactly 0, so log() is finite.
        u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))
        u1, u2 = u[:, :n_pairs], u[:, n_pairs:]
        r = torch.sqrt(-2.0 * torch.log(u1))
        z = torch.cat([r * torch.cos(2 * math.pi * u2), r * torch.sin(2 * math.pi * u2)], dim=1)[:, :n_el]
        return z.to(dtype).reshape(self.num, *sample_shape)
