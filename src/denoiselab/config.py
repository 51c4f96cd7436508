"""Typed run configuration and named presets.

A run is fully described by a :class:`RunConfig`; it is written to ``RUN_DIR/config.json`` and
embedded in every checkpoint, so a run can be resumed or sampled without its preset.
Presets are functions returning configs, kept in the explicit registry ``PRESETS``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DenoiselabError


@dataclass(frozen=True)
class DataConfig:
    name: str = "swiss-roll"          # a 2D set (see data.TOY_DATASETS) or an image set
    num: int = 1_000_000              # size of the training pool for 2D sets
    options: dict = field(default_factory=dict)  # data-set specific (path, image_size, ...)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"
    options: dict = field(default_factory=dict)  # constructor arguments of the network


@dataclass(frozen=True)
class DiffusionConfig:
    kind: str = "vp"                  # "vp" (DDPM family), "flow" (rectified flow), "denoise" (one step) or
                                      # "classifier" (a noise-aware p(y | x_t) on this VP schedule)
    schedule: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    betas: tuple = ()                 # for schedule "custom"
    parameterization: str = "eps"     # eps | x0 | v (vp); the flow net predicts velocity
    clip_x0: float = 0.0              # 0 = no clipping (2D); 1.0 for images in [-1, 1]
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
class RunConfig:
    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @staticmethod
    def from_dict(d: dict) -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "diffusion": DiffusionConfig,
                    "train": TrainConfig, "sample": SampleConfig}
        kwargs: dict[str, Any] = {"preset": d.get("preset", "custom")}
        for name, cls in sections.items():
            known = {f.name for f in dataclasses.fields(cls)}
            vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.get(name, {}).items() if k in known}
            kwargs[name] = cls(**vals)
        return RunConfig(**kwargs)


SECTIONS = ("data", "model", "diffusion", "train", "sample")


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



# key -> (lowest, highest, lowest included, highest included)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "data.num": (1, math.inf, True, False),
    "diffusion.T": (1, math.inf, True, False),
    "diffusion.beta_start": (0, 1, False, False),
    "diffusion.beta_end": (0, 1, False, False),
    "diffusion.clip_x0": (0, math.inf, True, False),
    "diffusion.p_uncond": (0, 1, True, False),
    "diffusion.sigma": (0, math.inf, True, False),
    "diffusion.min_snr": (0, math.inf, True, False),
    "diffusion.p_std": (0, math.inf, False, False),
    "diffusion.t_sigma_min": (0, math.inf, False, False),
    "diffusion.t_sigma_max": (0, math.inf, False, False),
    "diffusion.t_full": (0, 1, True, True),
    "diffusion.input_perturbation": (0, math.inf, True, False),
    "train.steps": (1, math.inf, True, False),
    "train.batch_size": (1, math.inf, True, False),
    "train.lr": (0, math.inf, False, False),
    "train.weight_decay": (0, math.inf, True, False),
    "train.warmup": (0, math.inf, True, False),
    "train.lr_final": (0, math.inf, True, False),
    "train.ema_decay": (0, 1, True, False),
    "train.grad_clip": (0, math.inf, True, False),
    "train.seed": (0, math.inf, True, False),
    "train.log_every": (1, math.inf, True, False),
    "train.ckpt_every": (0, math.inf, True, False),
    "train.keep_checkpoints": (1, math.inf, True, False),
    "train.preview_every": (0, math.inf, True, False),
    "train.threads": (0, math.inf, True, False),
    "train.grad_accum": (1, math.inf, True, False),
    "sample.steps": (1, math.inf, True, False),
    "sample.num": (1, math.inf, True, False),
    "sample.eta": (0, math.inf, True, False),
    "sample.eta_low": (0, math.inf, True, False),
    "sample.eta_switch": (0, math.inf, True, False),
    "sample.sigma_min": (0, math.inf, True, False),
    "sample.sigma_max": (0, math.inf, True, False),
}






def name_in(section: Any, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(section)}


# -- Presets --------------------------------------------------------------------------------

def kaist() -> RunConfig:
    """KAIST CS479 assignment 3, task 1: swiss roll, T = 1000, linear 1e-4..0.02, TimeLinear net
    [2, 128, 128, 128, 2], Adam 1e-3 (constant, no warm-up), batch 128, 5000 iterations.

    The assignment fixes the training, not what is sampled from it. Two choices sit outside the
    training loop and leave its trajectory bit-identical (tests/test_training.py):
    - samples come from the exponential moving average of the iterates (Polyak averaging, decay
      0.999 with the usual warm-up, as Ho et al. 2020 sample from an EMA). A constant learning
      rate leaves the last iterate noisy, and that noise strands DDIM samples between the arms of
      the roll: over 20 trainings (seeds 0-19) the EMA passes both thresholds (DDPM-1000 < 20,
      DDIM-50 < 40) in 20 of 20, the last iterate in 11 of 20 (README, "The 2D data sets");
    - x0_hat is clamped to [-5, 5], the data's range in the normalised frame (the swiss roll spans
      about [-3.8, 3.7]), as in Ho et al. 2020's clipped sampler. ``clip_x0`` reaches only the
      Denoiser (pipeline.build_denoiser), never the training loss.
    ``--set train.ema_decay=0`` samples the last iterate, as the assignment's own code does."""
    return RunConfig(
        preset="kaist",
        data=DataConfig(name="swiss-roll"),
        model=ModelConfig(name="timelinear", options={"hidden": [128, 128, 128]}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02, clip_x0=5.0),
        train=TrainConfig(steps=5000, batch_size=128, lr=1e-3, optimizer="adam", warmup=0, ema_decay=0.999),
        sample=SampleConfig(sampler="ddpm", steps=1000),
    )


def toy_default(name: str) -> Callable[[], RunConfig]:
    """Tuned default for a 2D set (benchmarks/toy2d.py): residual MLP of width 256 with Fourier
    input features faded out above t = 200 and a t-dependent linear path from x, bf16 autocast
    (the input layer stays float32), AdamW 2e-3 with warm-up and cosine decay, EMA 0.999,
    batch 512, 7,500 steps: 101 s on an idle 2-core CPU, swiss-roll chamfer DDPM-1000 0.48,
    DDIM-50 1.67. Ablations (8,000 steps, 3 seeds): the gated Fourier features took DDPM-1000
    from 0.72 to 0.47, the linear path took DDIM-50 from 3.3 to 1.9 (it removes samples stranded
    outside the roll), and bf16 kept both (0.45, 1.5)."""

    def preset() -> RunConfig:
        return RunConfig(
            preset=name,
            data=DataConfig(name=name),
            model=ModelConfig(name="mlp", options={"width": 256, "depth": 3, "input_freqs": 3,
                                                   "fourier_t_gate": 200.0, "linear_skip": True}),
            diffusion=DiffusionConfig(schedule="linear", T=1000, parameterization="eps"),
            train=TrainConfig(steps=7500, batch_size=512, lr=2e-3, optimizer="adamw", warmup=200,
                              lr_schedule="cosine", lr_final=0.01, ema_decay=0.999, grad_clip=1.0,
                              log_every=100, autocast="bf16"),
            # The measured best at 20 NFE on the swiss roll over 3 trainings, on the default grid
            # (benchmarks/samplers.py --by-steps; README, "Samplers").
            sample=SampleConfig(sampler="dpmpp-2m-sde", steps=20),
        )

    preset.__doc__ = f"Tuned default for the {name} 2D data set."
    return preset


def mnist() -> RunConfig:
    """Tuned default for MNIST-5k on a 2-core CPU (benchmarks/unet_throughput.py, mnist_quality.py):
    a lean 1.1M-parameter UNet that folds 2x2 pixel blocks into channels (so it runs at 14x14
    and 7x7, widths 40/80, one residual block per level, attention at 7x7) in channels_last
    layout; eps prediction with min-SNR-5 loss weighting on the noise levels the sampler visits
    (t drawn from the steps with sigma 0.15 to 15, a tenth uniform over all t), AdamW 2e-3 with
    cosine decay, EMA, batch 64, 3,000 steps (7.5 min on an idle 2-core CPU, 13 to 14 min on a slower one; the
    budget is 15); sampled with SDE-DPM-Solver++(2M), 40 steps, eta 4, log-SNR-uniform from sigma 10
    to 0.2."""
    return RunConfig(
        preset="mnist",
        data=DataConfig(name="mnist"),
        model=ModelConfig(name="unet", options={"in_channels": 1, "image_size": 28, "patch": 2, "ch": 40,
                                                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [7],
                                                "groups": 8, "dropout": 0.0, "channels_last": True}),
        # min-SNR-5 loss weighting (Hang et al. 2023): domain FID 1.76 +- 0.08 where L_simple gave
        # 2.01 +- 0.03 (3 trainings each, 1000 samples, dpmpp-2m-sde eta 3, 20 steps; README, "Images").
        # Training noise levels where the sampler evaluates (t_sampling "range": sigma 0.15 to 15 around
        # the sampling grid's 0.2 to 10, a tenth of the batch still uniform over all t): FID at 40
        # steps 0.55 +- 0.08 over three trainings x three sampling seeds, where uniform t gave 0.73 +-
        # 0.08; at 10 steps 0.73 +- 0.14 against 0.90 +- 0.12 (README, "Images"). Same time per step.
        # No input perturbation (Ning et al. 2023): gamma 0.1 gave FID 0.74 +- 0.15 at 10 steps and 0.55 +- 0.07
        # at 40 against 0.70 +- 0.14 and 0.55 +- 0.09 (three fresh trainings x two sampling seeds; README, "Images").
        diffusion=DiffusionConfig(schedule="linear", T=1000, parameterization="eps", clip_x0=1.0, min_snr=5.0,
                                  t_sampling="range", t_sigma_min=0.15, t_sigma_max=15.0, t_full=0.1),
        # 3,000 steps: domain FID 1.03 +- 0.16 at 20 sampler steps over three trainings, where 2,000 gave
        # 1.61 +- 0.12 (README, "Images"); the model is training-starved, so the budget goes to steps.
        train=TrainConfig(steps=3000, batch_size=64, lr=2e-3, optimizer="adamw", warmup=100, lr_schedule="cosine",
                          lr_final=0.05, ema_decay=0.995, grad_clip=1.0, log_every=50, preview_every=500),
        # (The figures below are from uniform-t trainings; with the range, 40 steps 0.55, 80 steps 0.53.)
        # SDE-DPM-Solver++(2M) on the default grid: the stochastic solver that measured best per
        # NFE on this preset (README, "Fast samplers"). eta 4: below eta 3 on each of three
        # trainings (FID 1.61 against 1.76 at 2,000 steps); eta 5 within the spread. 40 steps: FID
        # 0.86 +- 0.03 on the three 3,000-step trainings, where 20 gave 1.03 +- 0.16, 25 0.97 and
        # 30 0.95; 1000 samples in 31-32 s on an idle 2-core CPU (DDPM's 1000 steps: over 20 min).
        # The grid's noise range, measured rather than fitted: sigma 10 down to 0.2 (the fitted range
        # is 29.7 to one 8-bit level, 0.0078). MNIST's nearly binary strokes are resolved long
        # before one 8-bit level, so the fitted grid spent its last steps on noise no one can see,
        # and at few steps its first ones on noise levels where every digit looks the same. Over
        # three trainings x three sampling seeds: 40 steps FID 0.71 +- 0.10, where the fitted range gave
        # 0.87 +- 0.05; 10 steps 0.87 +- 0.13, where it gave 1.49. Retrained on a slower machine:
        # 40 steps 0.73 +- 0.08, 80 steps 0.70 +- 0.11 at twice the time, 20 0.81, 10 0.90 (README,
        # "Images"); the fitted range's 0.0078 is clamped to the model's trained 0.01. The network
        # samples under bf16 autocast (AMX): paired over 3 x 3, FID 0.728 against float32's 0.728,
        # the 1000-sample command 44 s against 62 s on the slower machine.
        sample=SampleConfig(sampler="dpmpp-2m-sde", steps=40, eta=4.0, num=64, sigma_min=0.2, sigma_max=10.0,
                            precision="bf16"),
    )


def mnist_class() -> RunConfig:
    """The ``mnist`` preset's recipe, class-conditional for classifier-free guidance (Ho & Salimans
    2022): a label embedding with a null class added to the time embedding, labels dropped with
    p_uncond = 0.1 during training, sampled by default with guidance scale 2."""
    base = mnist()
    model = dataclasses.replace(base.model, options={**base.model.options, "num_classes": 10})
    return dataclasses.replace(base, preset="mnist-class", model=model,
                               diffusion=dataclasses.replace(base.diffusion, p_uncond=0.1),
                               sample=dataclasses.replace(base.sample, guidance=2.0))


def mnist_classifier() -> RunConfig:
    """A noise-aware classifier p(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021) of
    the unconditional ``mnist`` run: cross-entropy on x_t at uniform t of the ``mnist`` preset's
    schedule (linear, T = 1000), the encoder half of a UNet (patch 2, widths 32/64)."""
    base = mnist()
    return RunConfig(
        preset="mnist-classifier",
        data=DataConfig(name="mnist"),
        model=ModelConfig(name="classifier", options={"in_channels": 1, "num_classes": 10, "image_size": 28,
                                                      "patch": 2, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
                                                      "groups": 8, "dropout": 0.1}),
        diffusion=dataclasses.replace(base.diffusion, kind="classifier", clip_x0=0.0, min_snr=0.0, t_sampling="uniform"),
        train=TrainConfig(steps=1500, batch_size=128, lr=2e-3, optimizer="adamw", weight_decay=0.05, warmup=100,
                          lr_schedule="cosine", lr_final=0.05, ema_decay=0.995, grad_clip=1.0, log_every=50),
        sample=SampleConfig(sampler="ddim", steps=50, num=64, guidance=20.0),
    )


def mnist_text() -> RunConfig:
    """Text-to-image on captioned colour MNIST (``data.captioned``: seven colours, captions such as
    "a red seven" or "the digit 3 in green"): the ``mnist`` preset's recipe with 3 channels (plus the
    HSV value max(R, G, B) as a fourth input channel) and the pooled MiniLM prompt embedding
    (384-d, standardised by the training captions' mean and RMS) added to its time embedding;
    prompts dropped to the empty prompt with p_uncond = 0.1 for classifier-free guidance (Ho &
    Salimans 2022); v prediction (Salimans & Ho 2022): with eps prediction the 3-channel net never
    learned the digit (docs/results/guidance.md)."""
    base = mnist()
    model = dataclasses.replace(base.model, options={**base.model.options, "in_channels": 3, "cond_dim": 384,
                                                     "cond_norm": True, "value_channel": True})
    return dataclasses.replace(base, preset="mnist-text", data=DataConfig(name="mnist-text"), model=model,
                               diffusion=dataclasses.replace(base.diffusion, parameterization="v", p_uncond=0.1),
                               sample=dataclasses.replace(base.sample, guidance=3.0))


def cs180_time() -> RunConfig:
    """CS180 project 5 part B.2: the teaching UNet with additive t/T injection on MNIST, T = 300,
    linear betas 1e-4..0.02, D = 64, batch 128, Adam 1e-3 decayed by 0.1^(1/epochs) per epoch over
    20 epochs (so lr ends at 0.1 lr; per-step decay here). 20 epochs of the full 60k MNIST are
    9,380 steps; on MNIST-5k the same step count is kept."""
    return RunConfig(
        preset="cs180-time",
        data=DataConfig(name="mnist"),
        model=ModelConfig(name="cs180-unet", options={"in_channels": 1, "D": 64, "image_size": 28, "T": 300}),
        diffusion=DiffusionConfig(schedule="linear", T=300, beta_start=1e-4, beta_end=0.02, parameterization="eps",
                                  clip_x0=1.0),
        train=TrainConfig(steps=9380, batch_size=128, lr=1e-3, optimizer="adam", lr_schedule="exponential",
                          lr_final=0.1, log_every=100, preview_every=2000),
        sample=SampleConfig(sampler="ddpm", steps=300, num=64),
    )


def cs180_class() -> RunConfig:
    """CS180 (Fall 2024) project 5 part B.3: the class-conditioned teaching UNet (one-hot c, zeroed
    when dropped, through FCBlocks: unflatten <- c1 * unflatten + t1, up1 <- c2 * up1 + t2), DDPM
    with T = 300 and the time-conditioned preset's training, labels dropped with p_uncond = 0.1,
    sampled with classifier-free guidance scale 5 (the project's gamma = 5)."""
    base = cs180_time()
    model = dataclasses.replace(base.model, options={**base.model.options, "num_classes": 10})
    return dataclasses.replace(base, preset="cs180-class", model=model,
                               diffusion=dataclasses.replace(base.diffusion, p_uncond=0.1),
                               sample=dataclasses.replace(base.sample, guidance=5.0))


def folder_class() -> RunConfig:
    """Any labelled image folder (class = sub-folder, as the StanfordCars assignment uses), trained
    class-conditionally for classifier-free guidance: the number of classes is read from the folder
    (num_classes -1), labels dropped with p_uncond = 0.1, sampled with guidance 3. A 32x32 UNet
    like the pokemon preset's; point it at the folder with --set data.path=DIR."""
    return RunConfig(
        preset="folder-class",
        data=DataConfig(name="folder", options={"path": "images", "image_size": 32, "flip": True}),
        model=ModelConfig(name="unet", options={"in_channels": 3, "image_size": 32, "ch": 64, "ch_mult": [1, 2, 2],
                                                "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.1,
                                                "num_classes": -1}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, parameterization="eps", clip_x0=1.0, p_uncond=0.1),
        train=TrainConfig(steps=50_000, batch_size=128, lr=2e-4, optimizer="adam", warmup=500, ema_decay=0.9999,
                          grad_clip=1.0, log_every=100, ckpt_every=5000, preview_every=5000),
        sample=SampleConfig(sampler="ddim", steps=100, num=64, guidance=3.0),
    )


def cs180_denoiser() -> RunConfig:
    """CS180 project 5 part B.1: a single-step denoiser D(z) ~ x for z = x + sigma eps at sigma = 0.5
    (the unconditional teaching UNet, D = 128, batch 256, Adam 1e-4, 5 epochs of MNIST), shown on
    sigma in {0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0}. Data in [0, 1] as in the project."""
    return RunConfig(
        preset="cs180-denoiser",
        data=DataConfig(name="mnist", options={"range": "0,1"}),
        model=ModelConfig(name="cs180-unet", options={"in_channels": 1, "D": 128, "image_size": 28,
                                                      "time_conditioned": False}),
        diffusion=DiffusionConfig(kind="denoise", sigma=0.5),
        train=TrainConfig(steps=1170, batch_size=256, lr=1e-4, optimizer="adam", log_every=50),
    )


def pokemon() -> RunConfig:
    """The Saarland "Pokemon diffusion" seminar: 32x32 sprites from an image folder (transparent
    backgrounds composited on white, horizontal flips), linear schedule, x0 prediction, batch 256.
    Point it at your sprites with --set data.path=DIR."""
    return RunConfig(
        preset="pokemon",
        data=DataConfig(name="folder", options={"path": "pokemon", "image_size": 32, "flip": True}),
        model=ModelConfig(name="unet", options={"in_channels": 3, "image_size": 32, "ch": 64, "ch_mult": [1, 2, 2, 2],
                                                "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.1}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, parameterization="x0", clip_x0=1.0),
        train=TrainConfig(steps=50_000, batch_size=256, lr=2e-4, optimizer="adam", warmup=500, ema_decay=0.9999,
                          grad_clip=1.0, log_every=100, ckpt_every=5000, preview_every=5000),
        sample=SampleConfig(sampler="ddim", steps=100, num=64),
    )


def afhq64() -> RunConfig:
    """KAIST CS479 assignment 3, task 2 (AFHQ 64x64): T = 1000 linear, UNet ch 128, mults 1,2,2,2,
    4 residual blocks, attention at 32x32, dropout 0.1, Adam 2e-4 with 200 warm-up steps, batch 12.
    Point it at the AFHQ folder with --set data.path=DIR (labels from the cat/dog/wild sub-folders)."""
    return RunConfig(
        preset="afhq64",
        data=DataConfig(name="folder", options={"path": "afhq", "image_size": 64, "flip": True}),
        model=ModelConfig(name="unet", options={"in_channels": 3, "image_size": 64, "ch": 128, "ch_mult": [1, 2, 2, 2],
                                                "num_res_blocks": 4, "attn_resolutions": [32], "dropout": 0.1}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02, parameterization="eps",
                                  clip_x0=1.0),
        train=TrainConfig(steps=100_000, batch_size=12, lr=2e-4, optimizer="adam", warmup=200, ema_decay=0.9999,
                          log_every=100, ckpt_every=5000, preview_every=5000),
        sample=SampleConfig(sampler="ddpm", steps=1000, num=64),
    )


def ddpm128() -> RunConfig:
    """The paper-faithful DDPM repository's 128x128 setup (Ho et al. 2020, appendix B, at 128
    pixels): T = 1000 linear 1e-4..0.02, eps prediction, UNet ch 128 with five resolutions
    128 -> 64 -> 32 -> 16 -> 8 (ch_mult 1,1,2,2,4), two residual blocks per level, self-attention
    at 16x16, dropout 0.1, Adam 2e-4 with cosine annealing, batch 6, EMA 0.9999; 50,000 steps are
    300 epochs of a 1,000-image folder (the repository trains smithsonian butterflies and MTG
    cards for 300 epochs). Point it at your images with --set data.path=DIR."""
    return RunConfig(
        preset="ddpm128",
        data=DataConfig(name="folder", options={"path": "images", "image_size": 128, "flip": True, "labels": "none"}),
        model=ModelConfig(name="unet", options={"in_channels": 3, "image_size": 128, "ch": 128,
                                                "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2,
                                                "attn_resolutions": [16], "dropout": 0.1}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02, parameterization="eps",
                                  clip_x0=1.0),
        train=TrainConfig(steps=50_000, batch_size=6, lr=2e-4, optimizer="adam", lr_schedule="cosine", lr_final=0.0,
                          ema_decay=0.9999, log_every=100, ckpt_every=5000, preview_every=5000),
        sample=SampleConfig(sampler="ddpm", steps=1000, num=16),
    )


IMAGE_PRESETS: dict[str, Callable[[], RunConfig]] = {
    "mnist": mnist,
    "mnist-class": mnist_class,
    "mnist-classifier": mnist_classifier,
    "mnist-text": mnist_text,
    "cs180-time": cs180_time,
    "cs180-class": cs180_class,
    "cs180-denoiser": cs180_denoiser,
    "pokemon": pokemon,
    "afhq64": afhq64,
    "ddpm128": ddpm128,
    "folder-class": folder_class,
}


def swiss_roll_flow() -> RunConfig:
    """Rectified flow (Liu et al. 2023) on the swiss roll: the tuned 2D network and training of the
    swiss-roll preset with the velocity target; sampled with Heun in tau (benchmarks/samplers.py)."""
    base = toy_default("swiss-roll")()
    return dataclasses.replace(base, preset="swiss-roll-flow", diffusion=DiffusionConfig(kind="flow"),
                               sample=SampleConfig(sampler="heun", steps=10))


def cs180_flow(class_conditioned: bool) -> Callable[[], RunConfig]:
    """CS180 (Fall 2025) project 5 part B.2 / B.5: flow matching on MNIST with the teaching UNet,
    x_t = (1 - t) noise + t data, velocity target, t fed to the net as t in [0, 1] (the UNet's T is
    1000, the flow time scale); D = 64, batch 64, Adam 1e-2 decayed by 0.1^(1/epochs) per epoch
    over 10 epochs (per-step decay here; 10 epochs of the full 60k MNIST are 9,375 steps, kept on
    MNIST-5k), Euler sampling. The class-conditioned UNet (B.5) drops labels with p_uncond = 0.1
    for classifier-free guidance (the project samples with guidance scale 5)."""

    def preset() -> RunConfig:
        name = "cs180-flow-class" if class_conditioned else "cs180-flow"
        opts = {"in_channels": 1, "D": 64, "image_size": 28, "T": 1000}
        if class_conditioned:
            opts["num_classes"] = 10
        return RunConfig(
            preset=name,
            data=DataConfig(name="mnist"),
            model=ModelConfig(name="cs180-unet", options=opts),
            diffusion=DiffusionConfig(kind="flow", p_uncond=0.1 if class_conditioned else 0.0),
            train=TrainConfig(steps=9375, batch_size=64, lr=1e-2, optimizer="adam", lr_schedule="exponential",
                              lr_final=0.1, log_every=100, preview_every=2000),
            sample=SampleConfig(sampler="euler", steps=50, num=64, guidance=5.0 if class_conditioned else 1.0),
        )

    preset.__doc__ = cs180_flow.__doc__
    return preset


FLOW_PRESETS: dict[str, Callable[[], RunConfig]] = {
    "swiss-roll-flow": swiss_roll_flow,
    "cs180-flow": cs180_flow(False),
    "cs180-flow-class": cs180_flow(True),
}


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "kaist": kaist,
    **{n: toy_default(n) for n in ("swiss-roll", "moons", "circles", "s-curve", "checkerboard", "gaussians")},
    **IMAGE_PRESETS,
    **FLOW_PRESETS,
}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise DenoiselabError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
