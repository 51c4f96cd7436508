"""Latent runs (Rombach et al. 2022): a diffusion model trained on an autoencoder run's latents.

| symbol | meaning |
| --- | --- |
| x | an image (C, H, W) in the data's frame, [-1, 1] |
| E, D | the autoencoder run's encoder (posterior mean) and decoder |
| s | its latent scale, 1 / std of its training latents (stored in its checkpoint) |
| z | the latent the diffusion model learns and samples: z = s E(x); x = D(z / s) |

The data set is encoded once through the posterior means (with the KL weight 1e-6 the posterior
std is far below the latents' spread; Rombach et al. train on draws, which differ from the mean by
that std) and cached under the cache folder, keyed by the autoencoder's weights and the data
set. Mirroring is off for latents: the latent of a mirrored image is not the mirrored latent.
Everything that samples a latent run samples z and decodes it with ``LatentCodec.decode``; edits
encode their input images and take their masks down to the latent grid (``latent_mask``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data import TensorData
from ..errors import DenoiselabError
from ..io import log

LATENT_CACHE_VERSION = 1  # bump when encoding changes: invalidates cached latents
BATCH = 256


class LatentCodec:
    """An autoencoder run's encoder and decoder, scaled so the latents have unit variance."""

    def __init__(self, net: torch.nn.Module, run_dir: Path, image_shape: tuple[int, ...], digest: str):
        self.net, self.run_dir, self.digest = net.eval(), Path(run_dir), digest
        self.scale = float(net.latent_scale)
        self.image_shape = tuple(image_shape)
        self.latent_shape = tuple(net.latent_shape(image_shape))
        self.factor = int(net.factor)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] -> latents s E(x), on x's device."""
        out = [self.net.encode(x[i:i + BATCH].to(self.device).float())[0] * self.scale
               for i in range(0, len(x), BATCH)]
        return torch.cat(out).to(x.device) if out else x.new_zeros((0, *self.latent_shape))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images D(z / s) in [-1, 1], on z's device."""
        out = [self.net.decode(z[i:i + BATCH].to(self.device).float() / self.scale).clamp(-1, 1)
               for i in range(0, len(z), BATCH)]
        return torch.cat(out).to(z.device) if out else z.new_zeros((0, *self.image_shape))


def load_codec(path, device=None) -> LatentCodec:
    """The autoencoder run at ``path`` as a codec; one clear line if it is not one."""
    from ..device import place
    from ..models import build_model
    from ..training.checkpoint import load_latest

    path = Path(path)
    if not path.is_dir():
        raise DenoiselabError(f"latent.autoencoder {path}: no such run directory (train one with "
                              f"`denoiselab train --preset emoji-ae --out {path}`)")
    config = path / "config.json"
    try:
        cfg = RunConfig.from_dict(json.loads(config.read_text()), where=str(config))
    except (OSError, ValueError) as e:
        raise DenoiselabError(f"latent.autoencoder {path} is not a run directory ({e}): give an autoencoder run"
                              ) from None
    if cfg.diffusion.kind != "autoencoder":
        raise DenoiselabError(f"latent.autoencoder {path} is a {cfg.diffusion.kind} run, not an autoencoder: "
                              "give a run trained with `--preset emoji-ae` or `--preset folder-ae`")
    ck = load_latest(path, log=log)
    if ck is None:
        raise DenoiselabError(f"latent.autoencoder {path} has no checkpoint yet: finish its training first")
    cfg = RunConfig.from_dict(ck["config"])
    net = build_model(cfg.model.name, **dict(cfg.model.options))
    net.load_state_dict(ck["ema"] if ck["ema"] is not None else ck["model"])
    if not float(net.latent_scale) > 0:
        raise DenoiselabError(f"latent.autoencoder {path} has no fitted latent scale (its training stopped before the "
                              f"last step): resume it with `denoiselab train --out {path} --resume`")
    if device is not None:
        net = place(net, device)
    opts = cfg.model.options
    size = int(opts.get("image_size", opts.get("sample_size", 32)))
    image_shape = (int(opts.get("in_channels", 3)), size, size)
    return LatentCodec(net, path, image_shape, codec_digest(net))


def codec_digest(net: torch.nn.Module) -> str:
    """A short hash of an autoencoder's weights: cached latents are keyed by it."""
    return hashlib.sha256(b"".join(t.detach().cpu().contiguous().numpy().tobytes()
                                   for _, t in sorted(net.state_dict().items()))).hexdigest()[:16]


def check_fits(codec: LatentCodec, data: TensorData, name: str) -> None:
    """The autoencoder must read the data's images as they are: one line naming both shapes."""
    if data.kind != "images":
        raise DenoiselabError(f"latent diffusion encodes images, but {name} holds {data.kind}: drop latent.autoencoder")
    if tuple(data.sample_shape) != codec.image_shape:
        c, h, w = codec.image_shape
        raise DenoiselabError(f"latent.autoencoder {codec.run_dir} reads {c}x{h}x{w} images but {name} gives "
                              f"{'x'.join(map(str, data.sample_shape))}: set data.image_size (and channels) to the "
                              "autoencoder's, or train an autoencoder on this data")


def latent_data(cfg: RunConfig, data: TensorData, cache: Optional[Path] = None) -> TensorData:
    """``data`` with its images replaced by their latents, encoded once and cached; the codec rides
    along as ``.codec`` (previews decode with it)."""
    from ..io import atomic_save_npy, cache_folder, read_cache

    codec = load_codec(cfg.latent.autoencoder)
    check_fits(codec, data, cfg.data.name)
    key = json.dumps([LATENT_CACHE_VERSION, codec.digest, cfg.data.name, cfg.data.options, cfg.data.num,
                      cfg.train.seed, list(data.x.shape), float(data.x[:64].sum())], sort_keys=True, default=str)
    path = Path(cache or cache_folder()) / "latents" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"
    z = read_cache(path, (len(data.x), *codec.latent_shape))
    if z is not None:
        z = torch.from_numpy(z)
    else:
        t0 = time.perf_counter()
        z = codec.encode(data.x)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(path, z.numpy())
        log(f"encoded {len(z)} images to {'x'.join(map(str, codec.latent_shape))} latents in "
            f"{time.perf_counter() - t0:.1f} s (cached in {path})")
    out = dataclasses.replace(data, x=z.float(), hflip=False)
    out.codec = codec
    return out


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """An image mask (1 = keep) on the latent grid: a latent cell is kept only where every pixel it
    covers is kept (a min-pool), so the region to fill covers the whole hole."""
    m = mask.float()
    return -F.max_pool2d(-m.amin(1, keepdim=True), factor)


__all__ = ["LatentCodec", "check_fits", "codec_digest", "latent_data", "latent_mask", "load_codec"]
