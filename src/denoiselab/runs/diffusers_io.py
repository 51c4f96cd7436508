"""Import a diffusers folder on disk as a denoiselab run (``denoiselab import diffusers PATH``).

A pixel ``UNet2DModel`` or a ``UNet2DConditionModel`` with a prompt dictionary, and its scheduler
config, become a run: the network is ``models.diffusers_nets`` around the same weights, the
schedule and prediction type map into ``DiffusionConfig``, and every sampler, guidance method,
edit and metric then works on it. Nothing is downloaded: the folder is read as it is.

The scheduler's settings map as follows (diffusers -> ours):

| diffusers | denoiselab |
| --- | --- |
| ``num_train_timesteps``, ``beta_schedule`` linear / scaled_linear / squaredcos_cap_v2 / sigmoid, ``trained_betas`` | ``diffusion.T``, ``schedule`` linear / quadratic / cosine / sigmoid, custom ``betas`` |
| ``prediction_type`` epsilon / sample / v_prediction | ``parameterization`` eps / x0 / v |
| ``clip_sample``, ``clip_sample_range`` | ``clip_x0`` |
| ``thresholding``, ``dynamic_thresholding_ratio``, ``sample_max_value`` (Saharia et al. 2022) | ``dynamic_threshold``, ``clip_x0`` |
| ``variance_type`` learned_range | the network's ``variance_output``; ``ddpm`` uses it |
| ``timestep_spacing`` leading / trailing / linspace | ``sample.grid`` of the same name |

Safety: only safetensors files load; a pickled file (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) is
refused unless ``allow_pickle``, and then read with torch's tensors-only unpickler. Every check
runs before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..config import DataConfig, DiffusionConfig, ModelConfig, RunConfig, SampleConfig
from ..errors import DenoiselabError
from ..io import atomic_folder, log
from ..models.diffusers_nets import unet_config
from .build import build_denoiser, build_net
from .latent import LatentCodec, codec_digest

VAE_DIR = "vae"  # an imported latent run keeps its autoencoder run here, named relative to the run

UNETS = {"UNet2DModel": "diffusers-unet2d", "UNet2DConditionModel": "diffusers-unet2d-condition"}
# Schedulers whose config holds the training schedule, and the sampler a run takes by default.
SCHEDULERS = {"DDPMScheduler": ("ddpm", 0), "DDIMScheduler": ("ddim", 50),
              "DPMSolverMultistepScheduler": ("dpmpp-2m", 20), "EulerDiscreteScheduler": ("euler", 50),
              "EulerAncestralDiscreteScheduler": ("euler-ancestral", 50)}
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine",
                  "sigmoid": "sigmoid"}
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCE_TYPES = {"fixed_small": "", "fixed_small_log": "", "learned_range": "learned_range"}
SAFE = ".safetensors"
PICKLED = (".bin", ".pt", ".pth", ".ckpt")
WEIGHT_NAMES = ("diffusion_pytorch_model", "diffusion_pytorch_model.fp16")
PIXEL_LEVEL = 2 / 255  # one 8-bit level of an image in [-1, 1] (samplers.grids.PIXEL_LEVEL)


@dataclass
class Imported:
    """A diffusers folder read into the parts of a run: its config, its network (weights loaded)
    and what sampling needs to know (``info``, stored as a checkpoint's ``extra``)."""
    config: RunConfig
    net: torch.nn.Module
    info: dict
    autoencoder: Optional[tuple[RunConfig, torch.nn.Module]] = None  # a latent model's VAE, as a run's parts
    codec: Optional["LatentCodec"] = None  # ... and as the codec sampling decodes with


def read_json(path: Path, what: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DenoiselabError(f"cannot read the {what} {path} ({e}): is the diffusers folder complete?") from None
    if not isinstance(d, dict):
        raise DenoiselabError(f"the {what} {path} is not a JSON table")
    return d


def is_diffusers_folder(path) -> bool:
    """A pipeline folder (``model_index.json``, or ``unet/config.json``) or a bare model folder
    (a ``config.json`` that names a diffusers class)."""
    p = Path(path)
    if (p / "model_index.json").is_file() or (p / "unet" / "config.json").is_file():
        return True
    try:
        return "_class_name" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def locate(path) -> tuple[Path, Path, Optional[Path]]:
    """(the UNet's folder, the scheduler's config file, the VAE's folder or None) of a diffusers folder."""
    p = Path(path)
    if not p.is_dir():
        raise DenoiselabError(f"diffusers folder not found: {p} (pass the folder save_pretrained wrote)")
    index = read_json(p / "model_index.json", "pipeline index") if (p / "model_index.json").is_file() else {}
    vae = None
    if "vae" in index or (p / "vae" / "config.json").is_file():
        vae = p / "vae"
        if not (vae / "config.json").is_file():
            raise DenoiselabError(f"{p} names a vae but has no vae/config.json: is the folder complete?")
    unet = p / "unet" if (p / "unet" / "config.json").is_file() else p
    if not (unet / "config.json").is_file():
        raise DenoiselabError(f"{p} has no model config (unet/config.json or config.json): pass a diffusers folder "
                              "written by save_pretrained")
    for sched in (p / "scheduler" / "scheduler_config.json", p / "scheduler_config.json",
                  unet / "scheduler_config.json"):
        if sched.is_file():
            return unet, sched, vae
    raise DenoiselabError(f"{p} has no scheduler config (scheduler/scheduler_config.json): the noise schedule "
                          "is needed; save the pipeline's scheduler beside the UNet")


def load_tensors(path: Path, allow_pickle: bool, what: str) -> dict:
    """Tensors of a safetensors file, or of a pickled one only with ``allow_pickle`` (torch's
    tensors-only unpickler: a pickle can run code when loaded, so it is refused by default)."""
    path = Path(path)
    if path.suffix == SAFE:
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise DenoiselabError(f"cannot read the {what} {path} ({str(e).splitlines()[0]}): is it complete?") from None
    if not allow_pickle:
        raise DenoiselabError(f"the {what} {path} is a pickle, which can run code when loaded: convert it to "
                              ".safetensors, or pass --allow-pickle if you trust its source")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling raises many error types
        raise DenoiselabError(f"cannot read the {what} {path} as tensors ({str(e).splitlines()[0]})") from None


def weight_files(unet: Path) -> list[Path]:
    """The UNet's weight files: one file, or the shards a ``.index.json`` names; safetensors first."""
    for ext in (SAFE, *PICKLED):
        for name in WEIGHT_NAMES:
            index = unet / f"{name}{ext}.index.json"
            if index.is_file():
                shards = sorted(set(read_json(index, "weight index").get("weight_map", {}).values()))
                return [unet / s for s in shards]
            if (unet / f"{name}{ext}").is_file():
                return [unet / f"{name}{ext}"]
    raise DenoiselabError(f"{unet} has no weights (diffusion_pytorch_model.safetensors): save the model with "
                          "save_pretrained")


def sampler_of(cls: str) -> str:
    return SCHEDULERS.get(cls, ("", 0))[0]


def schedule_settings(sched: dict, where: Path) -> tuple[DiffusionConfig, SampleConfig, str]:
    """(diffusion, sample, variance_output) from a scheduler config (the table in the docstring)."""
    cls = sched.get("_class_name", "")
    if cls not in SCHEDULERS:
        raise DenoiselabError(f"unknown scheduler class {cls!r} in {where}: import a folder whose scheduler is one of "
                              f"{', '.join(SCHEDULERS)}")
    T = int(sched.get("num_train_timesteps", 1000))
    kw = dict(T=T, beta_start=float(sched.get("beta_start", 1e-4)), beta_end=float(sched.get("beta_end", 0.02)))
    if sched.get("trained_betas") is not None:
        kw.update(schedule="custom", betas=tuple(float(b) for b in sched["trained_betas"]))
    elif sched.get("beta_schedule", "linear") in BETA_SCHEDULES:
        kw.update(schedule=BETA_SCHEDULES[sched.get("beta_schedule", "linear")])
    else:
        raise DenoiselabError(f"beta_schedule {sched['beta_schedule']!r} in {where} is not known: use one of "
                              f"{', '.join(BETA_SCHEDULES)} or trained_betas")
    if sched.get("rescale_betas_zero_snr"):
        raise DenoiselabError(f"{where} rescales the betas to zero terminal SNR, whose last step is pure noise "
                              "(alpha_bar = 0): such schedules are not supported")
    pred = sched.get("prediction_type", "epsilon")
    if pred not in PREDICTIONS:
        raise DenoiselabError(f"prediction_type {pred!r} in {where} is not known: use one of {', '.join(PREDICTIONS)}")
    var = sched.get("variance_type") or "fixed_small"
    if var not in VARIANCE_TYPES:
        raise DenoiselabError(f"variance_type {var!r} in {where} is not supported: use one of "
                              f"{', '.join(VARIANCE_TYPES)}")
    clip = float(sched.get("clip_sample_range", 1.0)) if sched.get("clip_sample", sampler_of(cls) in ("ddpm", "ddim")) else 0.0
    threshold = 0.0
    if sched.get("thresholding"):  # dynamic thresholding (Saharia et al. 2022) in place of the static clip
        threshold = float(sched.get("dynamic_thresholding_ratio", 0.995))
        clip = float(sched.get("sample_max_value", 1.0))
    diffusion = DiffusionConfig(kind="vp", parameterization=PREDICTIONS[pred], clip_x0=clip,
                                dynamic_threshold=threshold, **kw)
    sampler, steps = SCHEDULERS[cls]
    spacing = sched.get("timestep_spacing", "leading")
    grid = spacing if sampler in ("ddpm", "ddim") and spacing in ("leading", "trailing", "linspace") else ""
    if grid == "leading" and sched.get("steps_offset", 0):
        log(f"warning: {where} shifts its leading timesteps by steps_offset {sched['steps_offset']}; "
            "the imported run's leading grid has no offset")
    if cls == "DDIMScheduler" and sched.get("set_alpha_to_one") is False:
        log(f"warning: {where} ends DDIM on alpha_bar[0] (set_alpha_to_one false); the imported run's last step "
            "lands on clean data (alpha_bar = 1)")
    sample = SampleConfig(sampler=sampler, steps=steps or T, grid=grid, guidance=1.0)
    return diffusion, sample, VARIANCE_TYPES[var]


def sigma_ends(diffusion: DiffusionConfig, shape: list[int]) -> tuple[float, float]:
    """The grids' noise range without data to fit it on: one 8-bit level up to the largest
    distance two images in [-1, 1] can have, 2 sqrt(D) (Song & Ermon 2020, Technique 1), both
    inside the schedule's range."""
    from .build import build_schedule

    sig = build_schedule(diffusion).sigmas
    lo, hi = float(sig[0]), float(sig[-1])
    return min(max(PIXEL_LEVEL, lo), hi), max(min(2 * math.sqrt(math.prod(shape)), hi), lo)


def read_prompts(path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """A prompt dictionary (``.pt``, ``.pth`` or ``.safetensors``): prompt -> (L, D) embedding,
    all of one shape, as CS180 ships them for IF stage I (T5, (1, 77, 4096))."""
    from ..io import existing_file

    p = existing_file(path, "prompt dictionary", (SAFE, *PICKLED))
    table = load_tensors(p, allow_pickle, "prompt dictionary")
    if not isinstance(table, dict) or not table:
        raise DenoiselabError(f"prompt dictionary {p} holds no prompt -> embedding table")
    out = {}
    for k, v in table.items():
        if not torch.is_tensor(v) or v.ndim not in (2, 3) or (v.ndim == 3 and v.shape[0] != 1):
            raise DenoiselabError(f"prompt dictionary {p}: the entry for {k!r} is not an (L, D) or (1, L, D) tensor")
        out[str(k)] = v.reshape(v.shape[-2:]).float()
    shapes = {tuple(v.shape) for v in out.values()}
    if len(shapes) > 1:
        raise DenoiselabError(f"prompt dictionary {p} mixes embedding shapes {sorted(shapes)}: use one encoder's")
    return out


def model_options(unet_cfg: dict, variance: str, prompts: Optional[dict], unet_dir: Path) -> dict:
    """The network's options: the UNet's own config, and the prompt dictionary's names and shape."""
    cls = unet_cfg.get("_class_name")
    opts = {**unet_config(unet_cfg), "variance_output": variance}
    if cls == "UNet2DModel":
        if prompts is not None:
            raise DenoiselabError(f"{unet_dir} holds an unconditional UNet2DModel: drop --prompts")
        opts["num_classes"] = int(unet_cfg.get("num_class_embeds") or 0)
        return opts
    if prompts is None:
        raise DenoiselabError(f"{unet_dir} holds a UNet2DConditionModel: import it with its prompt dictionary, "
                              "denoiselab import diffusers PATH --prompts FILE.pth --out RUN")
    width = unet_cfg.get("encoder_hid_dim") or unet_cfg.get("cross_attention_dim")
    shape = list(next(iter(prompts.values())).shape)
    if shape[-1] != width:
        raise DenoiselabError(f"the prompt embeddings are {shape[-1]} wide, but the UNet in {unet_dir} reads "
                              f"{width}-wide encoder states: use the embeddings made for this model")
    return {**opts, "prompts": list(prompts), "embed_shape": shape, "cond_dim": int(width)}


def read_folder(path, prompts=None, allow_pickle: bool = False) -> Imported:
    """Read and check a diffusers folder (and a prompt dictionary) into the parts of a run."""
    unet_dir, sched_path, vae_dir = locate(path)
    unet_cfg = read_json(unet_dir / "config.json", "model config")
    if unet_cfg.get("_class_name") not in UNETS:
        raise DenoiselabError(f"{unet_dir} holds a {unet_cfg.get('_class_name')!r}: import a UNet2DModel or a "
                              "UNet2DConditionModel")
    diffusion, sample, variance = schedule_settings(read_json(sched_path, "scheduler config"), sched_path)
    table = read_prompts(prompts, allow_pickle) if prompts is not None else None
    options = model_options(unet_cfg, variance, table, unet_dir)
    weights = read_weights(unet_dir, allow_pickle)
    size = unet_cfg.get("sample_size", 64)
    h, w = (size, size) if isinstance(size, int) else size
    shape = [int(unet_cfg.get("in_channels", 3)), int(h), int(w)]
    vae = read_vae(vae_dir, shape, allow_pickle) if vae_dir is not None else None
    if vae is not None and diffusion.clip_x0:
        log(f"warning: {sched_path} clips samples, but this is a latent model: its latents are left unclipped")
        diffusion = dataclasses.replace(diffusion, clip_x0=0.0)
    lo, hi = sigma_ends(diffusion, shape)
    cfg = RunConfig(preset=f"diffusers:{Path(path).resolve().name}",
                    data=DataConfig(name="imported", num=1, options={"source": str(Path(path).resolve())}),
                    model=ModelConfig(name=UNETS[unet_cfg["_class_name"]], options=options), diffusion=diffusion,
                    sample=dataclasses.replace(sample, sigma_min=lo, sigma_max=hi))
    net = build_net(cfg)
    load_weights(net, weights, table, unet_dir)
    net.eval()
    build_denoiser(cfg, net)  # the schedule's own checks, before anything is written
    info = {"kind": "images", "sample_shape": shape, "num_classes": int(options.get("num_classes", 0)),
            "class_names": [], "imported": {"from": "diffusers", "path": str(Path(path).resolve()),
                                            "unet": unet_cfg["_class_name"], "scheduler": sched_path.parent.name}}
    if table is not None:
        info["condition"] = "prompts"
    if vae is None:
        return Imported(cfg, net, info)
    ae_cfg, ae_net = vae
    image_shape = (ae_net.in_channels, shape[1] * ae_net.factor, shape[2] * ae_net.factor)
    info["image_shape"] = list(image_shape)
    cfg = dataclasses.replace(cfg, latent=dataclasses.replace(cfg.latent, autoencoder=VAE_DIR))
    return Imported(cfg, net, info, vae, LatentCodec(ae_net, vae_dir, image_shape, codec_digest(ae_net)))


def read_weights(folder: Path, allow_pickle: bool) -> dict:
    files = weight_files(folder)
    for f in files:  # every file is checked before any is read
        if f.suffix != SAFE and not allow_pickle:
            load_tensors(f, False, "weight file")
    weights = {}
    for f in files:
        weights.update(load_tensors(f, allow_pickle, "weight file"))
    return weights


def read_vae(vae_dir: Path, unet_shape: list[int], allow_pickle: bool) -> tuple[RunConfig, torch.nn.Module]:
    """A latent model's ``AutoencoderKL`` as an autoencoder run's (config, network), checked
    against the UNet it feeds."""
    from ..models import build_model

    vae_cfg = read_json(vae_dir / "config.json", "VAE config")
    if vae_cfg.get("_class_name") != "AutoencoderKL":
        raise DenoiselabError(f"{vae_dir} holds a {vae_cfg.get('_class_name')!r}: latent models import with an "
                              "AutoencoderKL")
    options = unet_config(vae_cfg)
    net = build_model("diffusers-autoencoder-kl", **options)
    if net.z_channels != unet_shape[0]:
        raise DenoiselabError(f"the VAE in {vae_dir} makes {net.z_channels}-channel latents but the UNet reads "
                              f"{unet_shape[0]} channels: the two folders do not belong together")
    try:
        net.vae.load_state_dict(read_weights(vae_dir, allow_pickle))
    except RuntimeError as e:
        raise DenoiselabError(f"the weights in {vae_dir} do not fit its config.json: {str(e).splitlines()[0]}") from None
    net.eval()
    size = int(vae_cfg.get("sample_size", unet_shape[1] * net.factor))
    cfg = RunConfig(preset=f"diffusers:{vae_dir.resolve().parent.name}/vae",
                    data=DataConfig(name="imported", num=1, options={"source": str(vae_dir.resolve())}),
                    model=ModelConfig(name="diffusers-autoencoder-kl", options={**options, "sample_size": size}),
                    diffusion=DiffusionConfig(kind="autoencoder"))
    return cfg, net


def load_weights(net: torch.nn.Module, weights: dict, table: Optional[dict], where: Path) -> None:
    """The UNet's weights into ``net.unet``, and the prompt embeddings into its table."""
    try:
        net.unet.load_state_dict(weights)
    except RuntimeError as e:
        raise DenoiselabError(f"the weights in {where} do not fit its config.json: {str(e).splitlines()[0]}") from None
    if table is not None:
        net.prompt_table.copy_(torch.stack(list(table.values())))


def import_diffusers(path, out, prompts=None, allow_pickle: bool = False) -> Path:
    """Write the run of a diffusers folder to ``out`` (config.json, checkpoint.safetensors): built
    in a temporary folder beside it and renamed, so ``out`` is either absent or whole."""
    from ..training.checkpoint import LATEST, save_checkpoint

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DenoiselabError(f"{out} already exists: choose a new --out folder")
    imp = read_folder(path, prompts, allow_pickle)

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(imp.config.to_json())
        save_checkpoint(tmp / LATEST, model=imp.net, config=imp.config.to_dict(), step=0, extra=imp.info)
        if imp.autoencoder is not None:  # a latent model: its VAE as an autoencoder run inside the run
            ae_cfg, ae_net = imp.autoencoder
            (tmp / VAE_DIR).mkdir()
            (tmp / VAE_DIR / "config.json").write_text(ae_cfg.to_json())
            save_checkpoint(tmp / VAE_DIR / LATEST, model=ae_net, config=ae_cfg.to_dict(), step=0,
                            extra={"kind": "images", "imported": imp.info["imported"]})

    return atomic_folder(out, write)


__all__ = ["Imported", "import_diffusers", "is_diffusers_folder", "read_folder", "read_prompts"]
