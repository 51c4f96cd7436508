"""Build the parts of a run from its config: schedule, data, network, denoiser, objective, trainer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from ..config import DiffusionConfig, RunConfig
from ..data import TensorData, build_dataset
from ..denoiser import ConsistencyDenoiser, Denoiser, FlowDenoiser
from ..errors import DenoiselabError
from ..losses import make_objective
from ..models import build_model
from ..models.text_encoder import encode as encode_texts
from ..process import FLOW_TIME_SCALE
from ..schedules import NoiseSchedule, make_schedule

if TYPE_CHECKING:
    from ..samplers.start import DataMoments




def build_schedule(d: DiffusionConfig) -> NoiseSchedule:
    if d.schedule == "custom":
        return make_schedule("custom", betas=list(d.betas))
    if d.schedule == "cosine":
        return make_schedule("cosine", d.T)
    return make_schedule(d.schedule, d.T, beta_start=d.beta_start, beta_end=d.beta_end)


def open_dataset(name: str, options: Optional[dict] = None, num: int = 0, seed: int = 0) -> TensorData:
    """A data set by name, handed the text encoder a captioned set needs (data never imports models)."""
    return build_dataset(name, options, num, seed, encode=encode_texts)


def build_data(cfg: RunConfig) -> TensorData:
    """The data a run trains on: a latent run's are its images' latents (``runs.latent``)."""
    data = build_dataset(cfg.data.name, cfg.data.options, cfg.data.num, cfg.train.seed, encode=encode_texts)
    if cfg.latent.autoencoder:
        from .latent import latent_data

        data = latent_data(cfg, data)
    if cfg.data.balance > 0:
        from ..data.tensors import class_balance_weights

        class_balance_weights(data.y, cfg.data.balance)  # unlabelled data: one line before any work
        data.balance = cfg.data.balance
    return data


def build_net(cfg: RunConfig, data: Optional[TensorData] = None) -> torch.nn.Module:
    opts = dict(cfg.model.options)
    net = build_model(cfg.model.name, **opts)
    null = getattr(data, "null_cond", None)
    if null is not None and hasattr(net, "null_cond"):
        # Text models: the empty prompt's embedding is the null condition (saved with the weights).
        net.null_cond.copy_(null)
    emb = getattr(data, "embeddings", None)
    if emb is not None and getattr(net, "cond_norm", False):
        net.set_cond_stats(emb)
    return net


def build_denoiser(cfg: RunConfig, net: torch.nn.Module) -> Optional[Denoiser]:
    d = cfg.diffusion
    if d.kind in ("denoise", "classifier", "autoencoder"):
        return None  # a single-step denoiser, a classifier or an autoencoder is not a diffusion model: no sampler
    if d.kind == "flow":
        return student_denoiser(cfg, FlowDenoiser(net, time_scale=FLOW_TIME_SCALE, clip_x0=d.clip_x0 or None))
    if d.kind != "vp":
        raise DenoiselabError(f"diffusion kind {d.kind!r} is not available: use vp, flow, denoise, classifier or "
                              "autoencoder")
    if d.dynamic_threshold and not d.clip_x0:
        raise DenoiselabError("diffusion.dynamic_threshold needs diffusion.clip_x0, the largest threshold "
                              "(diffusers' sample_max_value; 1 for images in [-1, 1])")
    den = Denoiser(net, build_schedule(d), d.parameterization, clip_x0=d.clip_x0 or None,
                   threshold=d.dynamic_threshold)
    return student_denoiser(cfg, den)


def student_denoiser(cfg: RunConfig, den: Denoiser):
    """A consistency student's denoiser: ``den`` under the boundary condition (``ConsistencyDenoiser``).
    A reflow student is a flow like its teacher: ``den`` itself."""
    s = cfg.distill
    if not s.method or s.method == "reflow":
        return den
    return ConsistencyDenoiser(den, s.sigma_boundary or den.sigma_range[0], s.sigma_data, s.boundary_scale, s.c_out,
                               guidance=cfg.sample.guidance if s.guidance_max > 0 else None)


def build_objective(cfg: RunConfig, data: Optional[TensorData] = None):
    """objective(net, x0, cond, generator) -> loss, for the trainer (``losses.make_objective``)."""
    d = cfg.diffusion
    schedule = build_schedule(d) if d.kind in ("vp", "classifier") else None
    # Text data: dropped prompts become the empty prompt.
    objective = make_objective(d, schedule, getattr(data, "null_cond", None))
    if d.kind == "autoencoder" and data is not None:
        from ..losses import LatentScaleFit

        return LatentScaleFit(objective, data.x, cfg.train.steps)  # the latent scale, fitted after the last step
    return objective


def resolve_config(cfg: RunConfig, data: TensorData) -> RunConfig:
    """Fill in what a preset leaves to the data (``num_classes: -1`` = the data's class count) and
    check that a class-conditional model or a classifier gets labelled data it can represent."""

    opts = dict(cfg.model.options)
    k = opts.get("num_classes", 0) or 0
    if k == -1:
        if not data.num_classes:
            raise DenoiselabError(f"{cfg.preset} learns classes from the data, but {cfg.data.name} has no labels: "
                                  "use a folder with one sub-folder per class")
        opts["num_classes"] = k = data.num_classes
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=opts))
    if (k or cfg.diffusion.kind == "classifier") and data.num_classes > k:
        have = "no labels" if not data.num_classes else f"{data.num_classes} classes"
        raise DenoiselabError(f"the model has num_classes={k} but the data has {have}: "
                              f"--set model.num_classes={data.num_classes or 'N'} (or -1: the data's count)")
    if cfg.diffusion.kind == "autoencoder" and (data.kind != "images" or cfg.model.name != "autoencoder"):
        raise DenoiselabError(f"diffusion kind autoencoder trains model autoencoder on images, not {cfg.model.name} "
                              f"on {cfg.data.name}: start from `--preset emoji-ae` or `--preset folder-ae`")
    if cfg.diffusion.kind == "classifier" and not data.num_classes:
        raise DenoiselabError(f"a classifier trains on labelled data, but {cfg.data.name} has no labels")
    if cfg.latent.autoencoder:
        cfg = resolve_latent(cfg)
    s = cfg.sample
    if cfg.diffusion.kind in ("vp", "flow") and not (s.sigma_min and s.sigma_max):
        # The data's noise range, derived once here and stored with the run (grids.fit_sigma_range);
        # a preset that stores a measured range (``mnist``) keeps it.
        from ..samplers.grids import fit_sigma_range

        lo, hi = fit_sigma_range(data.x, data.kind)
        cfg = dataclasses.replace(cfg, sample=dataclasses.replace(s, sigma_min=s.sigma_min or lo,
                                                                   sigma_max=s.sigma_max or hi))
    return cfg


def resolve_latent(cfg: RunConfig) -> RunConfig:
    """A latent run stores its autoencoder's absolute path (so it samples from any working
    directory) and leaves x0 unclipped (latents are not bounded as pixels are)."""
    if cfg.diffusion.kind not in ("vp", "flow"):
        raise DenoiselabError(f"latent.autoencoder is for diffusion and flow runs, not kind {cfg.diffusion.kind}: "
                              "drop it")
    if cfg.diffusion.clip_x0:
        raise DenoiselabError("diffusion.clip_x0 clips pixels, and latents are unbounded: --set diffusion.clip_x0=0 "
                              "for a latent run")
    path = str(Path(cfg.latent.autoencoder).resolve())
    return dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, autoencoder=path))


def data_info(data: TensorData) -> dict:
    """What sampling needs to know about the data, stored in every checkpoint."""
    info = {"kind": data.kind, "sample_shape": list(data.sample_shape), "num_classes": data.num_classes,
            "class_names": list(data.class_names)}
    if getattr(data, "null_cond", None) is not None:
        from ..models.text_encoder import ENCODER

        info["condition"] = "text"
        info["text_encoder"] = ENCODER
    codec = getattr(data, "codec", None)
    if codec is not None:  # a latent run: samples are decoded to images of this shape
        info["image_shape"] = list(codec.image_shape)
    return info


def make_trainer(cfg: RunConfig, out: Path, data: TensorData, progress: bool = True, device=None, runtime=None,
                 net: Optional[torch.nn.Module] = None, objective=None):
    """The trainer of a run on ``device`` (default the CPU), or in the processes of ``runtime``
    (``training.runtime``: one process, or Accelerate's data-parallel ones). A distillation hands
    in its student ``net`` (the teacher's weights) and ``objective``."""
    from ..training.trainer import Trainer

    cfg = resolve_config(cfg, data)
    if net is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)  # the initial weights depend on the run's seed alone
            net = build_net(cfg, data)
    objective = objective or build_objective(cfg, data)
    return Trainer(net, objective, data, cfg.train, out, cfg.to_dict(), progress=progress,
                   on_preview=preview_hook(cfg, data, out), extra=data_info(data), device=device, runtime=runtime,
                   moments=moments_to_store(cfg, data))


def moments_to_store(cfg: RunConfig, data: TensorData) -> Optional[dict[str, torch.Tensor]]:
    """The data's mean and covariance (``samplers.start``) as checkpoint tensors, stored in every
    checkpoint of a diffusion or flow run so its deterministic samplers start from the noised
    data's moments; None for the other kinds."""
    if cfg.diffusion.kind not in ("vp", "flow"):
        return None
    return fit_data_moments(data).tensors()


def fit_data_moments(data: TensorData) -> "DataMoments":
    """The moments of what the model is trained on: with ``data.flip`` each image and its mirror."""
    from ..samplers.start import fit_moments

    x = data.x
    if data.kind == "images" and data.hflip:
        x = torch.cat([x, x.flip(-1)])
    return fit_moments(x)


def preview_hook(cfg: RunConfig, data: TensorData, out: Path):
    """Image runs: a sample grid every preview_every steps (2D runs need none), drawn with DDIM
    (25 steps; a student with its own sampler) from fixed seeds so successive previews show the
    same samples maturing."""
    if data.kind != "images" or not cfg.train.preview_every or cfg.diffusion.kind not in ("vp", "flow"):
        return None
    from ..samplers.api import generate
    from ..viz.images import save_grid

    # A student previews with its own few-step sampler.
    sampler, steps = (cfg.sample.sampler, cfg.sample.steps) if cfg.distill.method else ("ddim", 25)

    codec = getattr(data, "codec", None)

    def on_preview(step: int, net: torch.nn.Module) -> None:
        net.eval()
        x, _ = generate(build_denoiser(cfg, net), 36, data.sample_shape, sampler=sampler, steps=steps, seed=0)
        save_grid(x if codec is None else codec.decode(x), Path(out) / "previews" / f"step{step:07d}.png", nrow=6)

    return on_preview
