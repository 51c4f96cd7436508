"""diffusers' UNets as plain denoiselab networks, ``net(x, t, cond=None)``.

Glossary: ``x`` (N, C, H, W) images in [-1, 1]; ``t`` (N,) the (possibly fractional) step index the
UNet's sinusoidal time embedding reads, as diffusers' pipelines hand it; ``cond`` class labels
(``DiffusersUNet2D``) or prompt indices into the network's own prompt dictionary
(``DiffusersUNet2DCondition``); -1 is the null condition in both.

The options of either network are the UNet's own diffusers config (what ``config.json`` of a
``unet`` folder holds), plus a few of ours, so a run's ``model.options`` rebuilds the same UNet
and its weights load into ``net.unet`` unchanged. diffusers is imported when a network is built,
so the core install does not need it (``pip install 'denoiselab[diffusers]'``).

``variance_output = "learned_range"``: the UNet outputs 2C channels, the prediction and then v in
[-1, 1], which interpolates the reverse step's log-variance between beta_tilde and beta (Nichol &
Dhariwal 2021, eq. 15). The ``Denoiser`` splits them; the ``ddpm`` sampler uses v.
"""

from __future__ import annotations

import difflib
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import DenoiselabError

MISSING = "diffusers is not installed: pip install 'denoiselab[diffusers]'"
VARIANCE_OUTPUTS = ("", "learned_range")


def diffusers_module():
    try:
        import diffusers
    except ImportError:
        raise DenoiselabError(MISSING) from None
    return diffusers


def unet_config(config: dict) -> dict:
    """A diffusers config without its bookkeeping keys (``_class_name``, ``_diffusers_version``, ...)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_")}


def _check_variance(variance_output: str, config: dict) -> None:
    if variance_output not in VARIANCE_OUTPUTS:
        raise DenoiselabError(f"variance_output {variance_output!r} is not known: use '' (a fixed variance) or "
                              "'learned_range'")
    c_in, c_out = config.get("in_channels", 3), config.get("out_channels", 3)
    want = 2 * c_in if variance_output else c_in
    if c_out != want:
        what = "learned-range variance needs" if variance_output else "a fixed variance needs"
        raise DenoiselabError(f"the UNet outputs {c_out} channels for {c_in} input channels, but {what} {want}: "
                              "fix out_channels, or the scheduler's variance_type")


class DiffusersUNet2D(nn.Module):
    """diffusers' ``UNet2DModel`` (pixel models: ddpm-cifar10-32, ddpm-butterflies-128, the output
    of diffusers' ``train_unconditional.py``), unconditional or class-conditional.

    ``num_classes``: a class-conditional network. Built here for training (no ``num_class_embeds``
    in the options), it gets one more embedding, the null class (label -1), which classifier-free
    guidance needs; an imported one keeps its ``num_class_embeds`` and has no null class.
    """

    def __init__(self, num_classes: int = 0, variance_output: str = "", **config):
        super().__init__()
        config = unet_config(config)
        _check_variance(variance_output, config)
        self.num_classes = int(num_classes or 0)
        if self.num_classes and not config.get("num_class_embeds"):
            config["num_class_embeds"] = self.num_classes + 1
        self.null_label = self.num_classes if (config.get("num_class_embeds") or 0) > self.num_classes else None
        self.variance_output = variance_output or None
        self.unet = diffusers_module().UNet2DModel.from_config(config)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        labels = None
        if self.num_classes:
            labels = self.labels(cond, x.shape[0], x.device)
        return self.unet(x, t, class_labels=labels).sample

    def labels(self, cond: Optional[torch.Tensor], n: int, device) -> torch.Tensor:
        """Class labels with -1 (or None) mapped to the null class, which only a network trained
        with label dropout has."""
        if cond is None:
            cond = torch.full((n,), -1, dtype=torch.long, device=device)
        cond = torch.as_tensor(cond, device=device).long().reshape(-1).expand(n)
        if (cond < 0).any():
            if self.null_label is None:
                raise DenoiselabError("this diffusers model has no null class, so it has no unconditional "
                                      "prediction: pass a class and --guidance 1 (no classifier-free guidance)")
            cond = torch.where(cond < 0, torch.full_like(cond, self.null_label), cond)
        return cond


class DiffusersUNet2DCondition(nn.Module):
    """diffusers' ``UNet2DConditionModel`` with a prompt dictionary (DeepFloyd IF stage I's shape:
    64x64 pixels, T5 embeddings of width 4096, learned-range variance).

    The precomputed embeddings (``prompts``, each (L, D) = ``embed_shape``) live in the buffer
    ``prompt_table`` and travel with the weights, so a run needs no text encoder. ``cond`` holds
    indices into it (-1 or None: the empty prompt ""), or (N, L, D) embeddings directly.
    ``cond_dim`` is D, the width the UNet reads.
    """

    def __init__(self, prompts: Sequence[str] = (), embed_shape: Sequence[int] = (1, 1), cond_dim: int = 0,
                 variance_output: str = "", **config):
        super().__init__()
        config = unet_config(config)
        _check_variance(variance_output, config)
        width = config.get("encoder_hid_dim") or config.get("cross_attention_dim")
        if cond_dim and cond_dim != width:
            raise DenoiselabError(f"the prompt embeddings are {cond_dim} wide, but the UNet reads {width}-wide "
                                  "encoder states: use the embeddings made for this model")
        self.prompts = [str(p) for p in prompts]
        self.cond_dim = int(cond_dim or width)
        self.variance_output = variance_output or None
        self.register_buffer("prompt_table", torch.zeros(len(self.prompts), *embed_shape))
        self.unet = diffusers_module().UNet2DConditionModel.from_config(config)

    @property
    def null_cond(self) -> torch.Tensor:
        """The null condition: index -1, the empty prompt's embedding."""
        return torch.tensor(-1)

    def index(self, prompt: str) -> int:
        """The prompt's row in the dictionary; an unknown one is an error naming the nearest."""
        if prompt in self.prompts:
            return self.prompts.index(prompt)
        near = difflib.get_close_matches(prompt, self.prompts, n=3, cutoff=0.0)
        raise DenoiselabError(f"prompt {prompt!r} is not in the model's prompt dictionary; nearest: "
                              f"{', '.join(repr(p) for p in near) or 'none'} (import a dictionary that holds it)")

    def prompt_condition(self, prompts: Sequence[str], num: int,
                         negative: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond (num,), uncond (1,)) as ``models.text_encoder.prompt_condition`` gives them, but as
        indices into the dictionary: sample i gets prompt i mod P; guidance contrasts against the
        negative prompt, or against the empty prompt (-1)."""
        prompts = list(prompts or [])
        if not prompts:
            raise DenoiselabError("the prompt list is empty: pass a prompt of the model's dictionary with --prompt")
        rows = torch.tensor([self.index(p) for p in prompts], dtype=torch.long)
        uncond = torch.tensor([self.index(negative) if negative else -1], dtype=torch.long)
        return rows[torch.arange(num) % len(rows)], uncond

    def embeddings(self, cond: Optional[torch.Tensor], n: int) -> torch.Tensor:
        if cond is not None and torch.is_floating_point(cond):
            if cond.ndim != 3 or cond.shape[-1] != self.cond_dim:
                raise DenoiselabError(f"this UNet reads (N, L, {self.cond_dim}) prompt embeddings, got a condition "
                                      f"of shape {tuple(cond.shape)}")
            return cond.expand(n, -1, -1)
        idx = torch.full((n,), -1, dtype=torch.long) if cond is None else cond.long().reshape(-1).expand(n)
        if (idx < 0).any():
            if "" not in self.prompts:
                raise DenoiselabError("the prompt dictionary has no empty prompt '': unconditional sampling and "
                                      "classifier-free guidance need its embedding; add it and import again")
            idx = torch.where(idx < 0, torch.full_like(idx, self.prompts.index("")), idx)
        return self.prompt_table[idx.to(self.prompt_table.device)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        states = self.embeddings(cond, x.shape[0]).to(x.dtype)
        return self.unet(x, t, encoder_hidden_states=states).sample


class DiffusersAutoencoderKL(nn.Module):
    """diffusers' ``AutoencoderKL`` (Stable Diffusion's first stage) with the interface of
    ``models.autoencoder.KLAutoencoder``: ``encode(x) -> (mean, logvar)``, ``decode(z)``,
    ``latent_shape``, ``factor`` and ``latent_scale`` (the config's ``scaling_factor``, which
    Rombach et al. 2022 fit as 1 / std of the training latents: 0.18215 for SD 1.x). A
    ``shift_factor`` (SD3, Flux: z = (mean - shift) * scale) has no counterpart and is refused."""

    def __init__(self, **config):
        super().__init__()
        config = unet_config(config)
        if config.get("shift_factor"):
            raise DenoiselabError(f"this AutoencoderKL shifts its latents (shift_factor {config['shift_factor']}), "
                                  "which latent runs do not: import a VAE without shift_factor (SD 1.x/2.x shape)")
        self.vae = diffusers_module().AutoencoderKL.from_config(config)
        self.factor = 2 ** (len(config.get("block_out_channels", (64,))) - 1)
        self.in_channels = int(config.get("in_channels", 3))
        self.z_channels = int(config.get("latent_channels", 4))
        self.register_buffer("latent_scale", torch.tensor(float(config.get("scaling_factor", 0.18215))))

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        return self.z_channels, h // self.factor, w // self.factor

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(x).latent_dist
        return dist.mean, dist.logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample


__all__ = ["DiffusersAutoencoderKL", "DiffusersUNet2D", "DiffusersUNet2DCondition", "MISSING", "diffusers_module", "VARIANCE_OUTPUTS", "unet_config"]
