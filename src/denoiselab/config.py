"""Typed run configuration and named presets.

A run is fully described by a :class:`RunConfig`; it is written to ``RUN_DIR/config.json`` and
embedded in every checkpoint, so a run can be resumed or sampled without its preset.
Presets are functions returning configs, kept in the explicit registry ``PRESETS``.
"""

from __future__ import annotations

import dataclasses
import json
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
    kind: str = "vp"                  # "vp" (DDPM family) or "flow" (rectified flow)
    schedule: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    betas: tuple = ()                 # for schedule "custom"
    parameterization: str = "eps"     # eps | x0 | v (vp); the flow net predicts velocity
    clip_x0: float = 0.0              # 0 = no clipping (2D); 1.0 for images in [-1, 1]
    p_uncond: float = 0.0             # conditional models: label dropout for classifier-free guidance


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
    preview_every: int = 0            # images: a sample grid every N steps (0 = never)
    threads: int = 0                  # torch threads; 0 = leave torch's default


@dataclass(frozen=True)
class SampleConfig:
    sampler: str = "ddpm"
    steps: int = 1000
    spacing: str = "leading"
    eta: float = 0.0
    num: int = 2048


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
        raise DenoiselabError(f"cannot read {text!r} as {type(like).__name__}") from None
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
        if name_in(sec, name):
            new_sec = dataclasses.replace(sec, **{name: _parse_value(text, getattr(sec, name))})
        elif hasattr(sec, "options"):
            opts = dict(sec.options)
            opts[name] = _parse_value(text, opts.get(name, None))
            new_sec = dataclasses.replace(sec, options=opts)
        else:
            raise DenoiselabError(f"unknown setting {key!r}: run with --dry-run to see every setting")
        cfg = dataclasses.replace(cfg, **{section: new_sec})
    return cfg


def name_in(section: Any, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(section)}


# -- Presets --------------------------------------------------------------------------------

def kaist() -> RunConfig:
    """KAIST CS479 assignment 3, task 1: swiss roll, T = 1000, linear 1e-4..0.02, TimeLinear net
    [2, 128, 128, 128, 2], Adam 1e-3 with 200 warm-up steps, batch 128, 5000 iterations, no EMA."""
    return RunConfig(
        preset="kaist",
        data=DataConfig(name="swiss-roll"),
        model=ModelConfig(name="timelinear", options={"hidden": [128, 128, 128]}),
        diffusion=DiffusionConfig(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02),
        train=TrainConfig(steps=5000, batch_size=128, lr=1e-3, optimizer="adam", warmup=200, ema_decay=0.0),
        sample=SampleConfig(sampler="ddpm", steps=1000),
    )


def toy_default(name: str) -> Callable[[], RunConfig]:
    """Tuned default for a 2D set: residual MLP, EMA, cosine LR decay (see benchmarks/toy2d.py)."""

    def preset() -> RunConfig:
        return RunConfig(
            preset=name,
            data=DataConfig(name=name),
            model=ModelConfig(name="mlp", options={"width": 256, "depth": 3}),
            diffusion=DiffusionConfig(schedule="linear", T=1000, parameterization="eps"),
            train=TrainConfig(steps=10000, batch_size=512, lr=2e-3, optimizer="adamw", warmup=200,
                              lr_schedule="cosine", lr_final=0.01, ema_decay=0.999, grad_clip=1.0,
                              log_every=100),
            sample=SampleConfig(sampler="ddpm", steps=1000),
        )

    preset.__doc__ = f"Tuned default for the {name} 2D data set."
    return preset


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
            sample=SampleConfig(sampler="euler", steps=50, num=64),
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
    **FLOW_PRESETS,
}


def get_preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise DenoiselabError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
