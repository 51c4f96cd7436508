"""Plain torch modules with signature ``net(x, t, cond=None)``; nothing here knows a schedule."""

from __future__ import annotations

from torch import nn

from ..errors import DenoiselabError
from .autoencoder import KLAutoencoder
from .classifier import NoiseAwareClassifier
from .cs180 import CS180UNet
from .diffusers_nets import DiffusersAutoencoderKL, DiffusersUNet2D, DiffusersUNet2DCondition
from .mlp import ResidualMLP, TimeLinearNet
from .unet import UNet

MODELS: dict[str, type[nn.Module]] = {
    "timelinear": TimeLinearNet,
    "mlp": ResidualMLP,
    "unet": UNet,
    "cs180-unet": CS180UNet,
    "classifier": NoiseAwareClassifier,
    "autoencoder": KLAutoencoder,  # encode/decode, not net(x, t, cond): the first stage of latent diffusion
    # diffusers' UNets (the diffusers extra): trained here, imported, exported (runs.diffusers_io)
    "diffusers-unet2d": DiffusersUNet2D,
    "diffusers-unet2d-condition": DiffusersUNet2DCondition,
    "diffusers-autoencoder-kl": DiffusersAutoencoderKL,  # an imported latent model's first stage
}


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise DenoiselabError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise DenoiselabError(f"bad options for model {name!r}: {e}") from None


__all__ = ["MODELS", "CS180UNet", "DiffusersAutoencoderKL", "DiffusersUNet2D", "DiffusersUNet2DCondition", "KLAutoencoder", "NoiseAwareClassifier", "ResidualMLP",
           "TimeLinearNet", "UNet", "build_model"]
