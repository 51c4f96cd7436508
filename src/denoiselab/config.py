"""Typed run configuration: frozen dataclasses, their strict loader, ``--set`` overrides, ranges.

A run is fully described by a :class:`RunConfig`; it is written to ``RUN_DIR/config.json`` and
embedded in every checkpoint, so a run can be resumed or sampled without its preset. The named
presets are data, TOML files in ``denoiselab/presets/``, loaded through ``RunConfig.from_dict``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import DenoiselabError


@dataclass(frozen=True)
class DataConfig:
    name: str = "swiss-roll"          # a 2D set (see data.TOY_DATASETS) or an image set
    num: int = 1_000_000              # size of the training pool for 2D sets
    options: dict = field(default_factory=dict)  # data-set specific (path, image_size, ...)
    balance: float = 0.0              # labelled data: draw each image with probability ~ N_c^-balance (N_c its
                                      # class's size): 0 = as the data are, 1 = every class equally often


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"
    options: dict = field(default_factory=dict)  # constructor arguments of the network


@dataclass(frozen=True)
class DiffusionConfig:
    kind: str = "vp"                  # "vp" (DDPM family), "flow" (rectified flow), "denoise" (one step),
                                      # "classifier" (a noise-aware p(y | x_t) on this VP schedule) or
                                      # "autoencoder" (a KL-regularised first stage, Rombach et al. 2022)
    schedule: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    betas: tuple = ()                 # for schedule "custom"
    parameterization: str = "eps"     # eps | x0 | v (vp); the flow net predicts velocity
    clip_x0: float = 0.0              # 0 = no clipping (2D); 1.0 for images in [-1, 1]
    dynamic_threshold: float = 0.0    # vp: p of dynamic thresholding (Saharia et al. 2022, sec. 2.3): x0_hat
                                      # clamped to the p-quantile s of |x0_hat| held in [1, clip_x0], then / s;
                                      # 0 = a static clip at clip_x0
    p_uncond: float = 0.0             # conditional models: label dropout for classifier-free guidance
    sigma: float = 0.0                # kind "denoise": the noise level of a single-step denoiser
    min_snr: float = 0.0              # vp: min-SNR-gamma loss weighting, this gamma (Hang et al. 2023); 0 = L_simple
    t_sampling: str = "uniform"       # vp: training noise levels, t uniform over the schedule, or "lognormal":
    p_mean: float = -1.2              # ln sigma ~ N(p_mean, p_std^2) (Karras et al. 2022, Table 1), sigma the
    p_std: float = 1.2                # VE noise level x_t / sqrt(abar) = x0 + sigma eps; or "range": t uniform
    t_sigma_min: float = 0.15         # over the steps whose sigma lies in [t_sigma_min, t_sigma_max] (where the
    t_sigma_max: float = 15.0         # run's sampler evaluates), except a fraction t_full drawn uniform over
    t_full: float = 0.1               # all T steps, so the model stays trained at every t
    input_perturbation: float = 0.0   # vp: gamma of input perturbation (Ning et al. 2023, eq. 9): the net sees
                                      # a x0 + s (eps + gamma xi) and still predicts eps; 0 = off
    kl_weight: float = 1e-6           # autoencoder: weight of the KL term against the reconstruction (Rombach et al. 2022)
    perceptual_weight: float = 0.0    # autoencoder: weight of the ST-LPIPS term beside L1 (0 = L1 alone)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 5000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"           # adam | adamw
    weight_decay: float = 0.0
    adam_betas: tuple = (0.9, 0.999)
    warmup: int = 0
    lr_schedule: str = "constant"     # constant | cosine | exponential
    lr_final: float = 0.0             # cosine: final lr as a fraction of lr; exponential: lr(steps)/lr
    ema_decay: float = 0.0            # 0 disables EMA
    grad_clip: float = 0.0            # 0 disables clipping (max global grad norm)
    seed: int = 0
    log_every: int = 100
    ckpt_every: int = 0               # 0 = only at the end
    keep_checkpoints: int = 2         # RUN_DIR/checkpoints/ keeps this many (>= 1; 2 leaves one to fall back to)
    preview_every: int = 0            # images: a sample grid every N steps (0 = never)
    threads: int = 0                  # torch threads; 0 = leave torch's default
    autocast: str = "auto"            # auto (bf16 on a CUDA GPU, fp16 + scaler without bf16, none on the CPU) |
                                      # none | bf16 (also on the CPU) | fp16 (CUDA): the forward pass's precision
    compile: bool = False             # torch.compile the network for training
    grad_accum: int = 1               # micro-batches per optimizer step (batch_size stays the global batch)


@dataclass(frozen=True)
class SampleConfig:
    """How ``sample``, ``evaluate``, ``animate`` and the run's pictures sample when not told otherwise."""
    sampler: str = "ddpm"
    steps: int = 1000
    spacing: str = "leading"          # unused; kept so configs that carry it still load (see ``grid``)
    eta: float = 0.0                  # 0 = the sampler's own default (DDIM 0, the stochastic solvers 1)
    eta_low: float = 0.0              # dpmpp SDE solvers: the eta of the steps at or below eta_switch
    eta_switch: float = 0.0           # (a sigma; 0 = one eta everywhere)
    grid: str = ""                    # time grid (samplers.GRIDS); "" = the sampler's default (grids.default_grid)
    sigma_min: float = 0.0            # karras/logsnr grid ends; 0 = fitted to the data at training time
    sigma_max: float = 0.0            # (grids.fit_sigma_range), or for older runs when first sampled
    num: int = 2048
    precision: str = "none"           # the network's autocast while sampling (none | bf16 | auto: bf16 on a CUDA GPU)
    guidance: float = 1.0             # conditional runs: default CFG scale w (1 = conditional model, 0 = unconditional);
                                      # classifier runs: default classifier-guidance scale


@dataclass(frozen=True)
class DistillConfig:
    """A few-step student (``denoiselab distill``): consistency distillation from a teacher run
    (Song et al. 2023, Algorithm 2), consistency training (Song & Dhariwal 2023) or, from a flow
    run, reflow (Liu et al. 2023). ``method`` "" is an ordinary run."""
    method: str = ""                  # "" (not a student) | cd (from the teacher's ODE) | ct (no teacher) |
                                      # reflow (a flow retrained on its teacher's noise -> sample pairs)
    teacher: str = ""                 # the teacher run's directory, as given to `denoiselab distill`
    solver: str = "heun"              # cd: the teacher's step between adjacent levels: heun | euler
    teacher_guidance: float = 1.0     # class-conditional teachers: the CFG scale w whose flow the student learns
    guidance_min: float = 0.0         # guidance_max > 0: the student takes w as an input and learns every flow
    guidance_max: float = 0.0         # with w in [guidance_min, guidance_max] (Meng et al. 2023, sec. 3.1)
    target_decay: float = 0.95        # mu of the target network's EMA (Song et al. 2023, Alg. 2, their CIFAR-10
                                      # setting); 0 = the student under stop-grad (Song & Dhariwal 2023, sec. 3.2)
    huber_c: float = 0.0              # pseudo-Huber c (Song & Dhariwal 2023, sec. 3.3); 0 = 0.00054 sqrt(dim)
    levels_start: int = 17            # noise levels N(k) = min(start 2^floor(k / K'), end) + 1 (Song & Dhariwal
    levels_end: int = 17              # 2023, eq. 8); 17, 17: N = 18 throughout, Song et al. 2023's CD setting,
                                      # which beat the doubling 10 -> 80 (docs/results/distill.md)
    sigma_boundary: float = 0.0       # sigma_min of the boundary condition f(x, sigma_min) = x; 0 = the model's
    sigma_top: float = 0.0            # the highest noise level distilled; 0 = the run's sample.sigma_max
    sigma_data: float = 0.5           # c_skip / c_out (Song et al. 2023, appendix C)
    boundary_scale: float = 10.0      # c_skip and c_out see scale * (sigma - sigma_min), as latent consistency
                                      # models do, so f starts as the teacher's x0_hat away from sigma_min
    c_out: str = "complement"         # complement: 1 - c_skip | lcm: u / sqrt(u^2 + sigma_data^2) (Luo et al.
                                      # 2023) (denoiser.ConsistencyDenoiser); `distill` picks per data kind
    rho: float = 7.0                  # the levels follow Karras et al. 2022, eq. 5
    pairs: int = 0                    # reflow: noise -> sample pairs drawn from the teacher; 0 = per data kind
    pair_steps: int = 0               # reflow: the teacher's ODE steps (``solver``) per pair; 0 = its sample.steps


@dataclass(frozen=True)
class LatentConfig:
    """Latent diffusion (Rombach et al. 2022): the diffusion model learns the latents of an
    autoencoder run's encoder (posterior means times its latent scale) and its samples are
    decoded to images. ``autoencoder`` "" is a pixel-space run."""
    autoencoder: str = ""             # an autoencoder run's directory (`denoiselab train --preset emoji-ae`)


@dataclass(frozen=True)
class RunConfig:
    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(d: dict, where: str = "config") -> "RunConfig":
        """The config a dict spells out (``config.json``, a checkpoint's copy, a preset's table).

        Strict: an unknown section or setting is an error naming it and its closest known one, so a
        typo in a preset file never passes silently. ``where`` names the source in that error. A
        missing setting takes its default (configs written before the setting existed)."""
        kwargs: dict[str, Any] = {"preset": d.get("preset", "custom")}
        for key in d:
            if key != "preset" and key not in SECTION_TYPES:
                raise unknown_key(key, ["preset", *SECTION_TYPES], where, "section")
        for name, cls in SECTION_TYPES.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise DenoiselabError(f"{name} in {where} must be a table of settings, not {values!r}")
            defaults = {f.name: f.default for f in dataclasses.fields(cls)}
            for key in values:
                if key not in defaults:
                    raise unknown_key(f"{name}.{key}", ALL_SETTINGS, where, "setting")
            kwargs[name] = cls(**{k: _loaded(v, defaults[k]) for k, v in values.items()})
        return RunConfig(**kwargs)


SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "diffusion": DiffusionConfig, "train": TrainConfig,
                 "sample": SampleConfig, "distill": DistillConfig, "latent": LatentConfig}
ALL_SETTINGS = [f"{s}.{f.name}" for s, cls in SECTION_TYPES.items() for f in dataclasses.fields(cls)]


def _loaded(value: Any, default: Any) -> Any:
    """A value read from JSON or TOML in its field's type: lists are tuples in the dataclasses, and
    a whole number where the field holds a float (``guidance = 3``) is that float, so the config
    writes back as it would from Python."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def unknown_key(key: str, known: list[str], where: str, what: str) -> DenoiselabError:
    """The error for a section or setting (``section.name``) no config has, naming the closest known
    one (difflib): in its own section first, then in another (``train.sampler`` -> ``sample.sampler``);
    else the choices, so the fix is on the same line."""
    section, _, bare = key.rpartition(".")
    same = [k for k in known if k.rpartition(".")[0] == section]
    close = [f"{section}.{m}" if section else m
             for m in difflib.get_close_matches(bare, [k.rpartition(".")[2] for k in same], n=1)]
    close = close or [k for k in known if k.rpartition(".")[2] == bare][:1]
    close = close or [k for k in known if k.rpartition(".")[2] in difflib.get_close_matches(bare, [
        k.rpartition(".")[2] for k in known], n=1)][:1]
    if close:
        return DenoiselabError(f"unknown {what} {key} in {where}: did you mean {close[0]}?")
    return DenoiselabError(f"unknown {what} {key} in {where}: use one of {', '.join(same or known)}")


SECTIONS = tuple(SECTION_TYPES)


def _parse_value(text: str, like: Any) -> Any:
    """Parse ``text`` to the type of ``like`` (the field's current value); JSON for others."""
    try:
        if isinstance(like, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(like, int):
            return int(float(text)) if float(text).is_integer() else int(text)
        if isinstance(like, float):
            return float(text)
        if isinstance(like, str):
            return text
        if isinstance(like, tuple):
            return tuple(json.loads(text if text.startswith("[") else f"[{text}]"))
    except (ValueError, json.JSONDecodeError):
        kind = {"bool": "true or false", "int": "a whole number", "float": "a number",
                "tuple": "a list such as 0.9,0.999"}.get(type(like).__name__, type(like).__name__)
        raise DenoiselabError(f"cannot read {text!r} as {kind}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(cfg: RunConfig, items: list[str]) -> RunConfig:
    """Apply ``key=value`` overrides. ``key`` is ``section.field`` (``train.lr``), a bare field name
    if it is unique across sections (``lr``, ``steps``, ``batch_size``, ``seed``), or
    ``model.<option>`` / ``data.<option>`` for a network or data-set option (``model.width=512``)."""
    for item in items:
        if "=" not in item:
            raise DenoiselabError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise DenoiselabError(f"unknown config section {section!r} in {key!r}: use one of {', '.join(SECTIONS)}")
        else:
            owners = [s for s in SECTIONS if name_in(getattr(cfg, s), key)]
            if not owners:
                raise DenoiselabError(f"unknown setting {key!r}: run with --dry-run to see every setting")
            # Bare names prefer the training section (steps, seed, lr, batch_size).
            section = "train" if "train" in owners else owners[0]
            if len(owners) > 1 and section != "train":
                raise DenoiselabError(f"setting {key!r} is ambiguous ({', '.join(owners)}): write section.{key}")
            name = key
        sec = getattr(cfg, section)
        try:
            new_sec = _override(sec, name, text, key)
        except DenoiselabError as e:
            raise DenoiselabError(f"--set {key}={text}: {e}") from None
        cfg = dataclasses.replace(cfg, **{section: new_sec})
    return cfg


def _override(sec: Any, name: str, text: str, key: str) -> Any:
    """The section with ``name`` set from ``text``: a field of the section, or an option of the
    network or data set."""
    if name_in(sec, name):
        return dataclasses.replace(sec, **{name: _parse_value(text, getattr(sec, name))})
    if name.startswith("options.") and hasattr(sec, "options"):
        name = name[len("options."):]  # model.options.num_classes is model.num_classes spelt out
    if hasattr(sec, "options"):
        return dataclasses.replace(sec, options={**sec.options, name: _parse_value(text, sec.options.get(name))})
    raise DenoiselabError(f"unknown setting {key!r}: run with --dry-run to see every setting")


# -- Validation: one error naming the bad key and the allowed values ------------------------

# Every numeric setting's allowed interval, in the usual notation (runs.validate checks it).
INTERVALS: dict[str, tuple[str, ...]] = {
    ">= 1": ("data.num", "diffusion.T", "train.steps", "train.batch_size", "train.log_every", "train.keep_checkpoints", "train.grad_accum", "sample.steps", "sample.num", "distill.levels_start", "distill.levels_end"),
    "(0, 1)": ("diffusion.beta_start", "diffusion.beta_end"),
    ">= 0": ("diffusion.clip_x0", "diffusion.sigma", "diffusion.min_snr", "diffusion.input_perturbation", "diffusion.kl_weight", "diffusion.perceptual_weight", "train.weight_decay", "train.warmup", "train.lr_final", "train.grad_clip", "train.seed", "train.ckpt_every", "train.preview_every", "train.threads", "sample.eta", "sample.eta_low", "sample.eta_switch", "sample.sigma_min", "sample.sigma_max", "distill.huber_c", "distill.sigma_boundary", "distill.sigma_top", "distill.teacher_guidance", "distill.guidance_min", "distill.guidance_max", "distill.pairs", "distill.pair_steps"),
    "[0, 1)": ("diffusion.p_uncond", "diffusion.dynamic_threshold", "train.ema_decay", "distill.target_decay"),
    "> 0": ("diffusion.p_std", "diffusion.t_sigma_min", "diffusion.t_sigma_max", "train.lr", "distill.sigma_data", "distill.boundary_scale", "distill.rho"),
    "[0, 1]": ("diffusion.t_full", "data.balance"),
}


def parse_interval(text: str) -> tuple[float, float, bool, bool]:
    """">= 1" -> (1, inf, True, False); "(0, 1]" -> (0, 1, False, True)."""
    if text.startswith((">=", ">")):
        return float(text.lstrip(">= ")), math.inf, text.startswith(">="), False
    lo, hi = (float(v) for v in text[1:-1].split(","))
    return lo, hi, text[0] == "[", text[-1] == "]"


# key -> (lowest, highest, lowest included, highest included)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    key: parse_interval(interval) for interval, keys in INTERVALS.items() for key in keys}


def name_in(section: Any, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(section)}
