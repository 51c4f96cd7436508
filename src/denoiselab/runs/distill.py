"""Few-step students: the config and the parts of a consistency distillation (``denoiselab distill``).

A student is a run like any other: its config is its teacher's with a ``distill`` section, the
sampler ``consistency`` and the distillation's own training settings; it starts from the
teacher's (EMA) weights, and its denoiser is the teacher's process under the boundary condition
(``runs.build.student_denoiser``). Sampling, evaluation, editing and the report take it as they
take any run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from ..config import DistillConfig, RunConfig, apply_overrides
from ..data import TensorData
from ..errors import DenoiselabError
from ..guidance import guided
from ..losses import ConsistencyObjective
from .build import build_denoiser, build_net
from .load import load_run, read_config
from .validate import validate_config

METHODS = ("cd", "ct")

# The student's training, beside the teacher's, from the teacher's weights, with an EMA for
# sampling; --set changes any of it. Images: a constant learning rate a tenth of a typical
# from-scratch one, as many steps as fit the 15-minute MNIST budget. Points: four times the steps
# at 2.5 times the rate, decayed on a cosine, cut the swiss roll's 1-step chamfer 4.4x
# against 3,000 constant steps at 2e-4 (docs/results/distill.md).
STUDENT_TRAIN = {
    "points": dict(steps=12000, lr=5e-4, warmup=0, lr_schedule="cosine", lr_final=0.02, ema_decay=0.999,
                   ckpt_every=0, preview_every=0),
    "images": dict(steps=500, lr=1e-4, warmup=0, lr_schedule="constant", lr_final=0.0, ema_decay=0.995,
                   ckpt_every=250, preview_every=250),
}


def check_teacher(cfg: RunConfig, where) -> None:
    """A teacher is a diffusion or flow run that is not itself a student."""
    kind = cfg.diffusion.kind
    if kind == "classifier":
        raise DenoiselabError(f"{where} is a noise-aware classifier: distil a diffusion or flow run")
    if kind == "denoise":
        raise DenoiselabError(f"{where} is a single-step denoiser: distil a diffusion or flow run")
    if kind not in ("vp", "flow"):
        raise DenoiselabError(f"{where} is a {kind!r} run: distil a diffusion or flow run")
    if cfg.distill.method:
        raise DenoiselabError(f"{where} is already a student (distilled from {cfg.distill.teacher}): "
                              "distil its teacher instead")


def student_config(teacher_dir: Path, method: str = "cd", sets: Optional[list[str]] = None,
                   kind: Optional[str] = None) -> RunConfig:
    """The config of a student of the run in ``teacher_dir``, before ``--set`` and after it.
    ``kind`` is the teacher's data kind ("points" or "images"; read from its checkpoint if None)."""
    if method not in METHODS:
        raise DenoiselabError(f"unknown distillation method {method!r}: choose cd (from the teacher's ODE) "
                              "or ct (consistency training, no teacher)")
    teacher = read_config(teacher_dir)
    check_teacher(teacher, teacher_dir)
    den = build_denoiser(teacher, None)
    lo, hi = den.sigma_range
    s = teacher.sample
    if kind is None:
        kind = load_run(teacher_dir).kind
    conditional = bool(teacher.model.options.get("num_classes")) or bool(teacher.model.options.get("cond_dim"))
    # The teacher's absolute path: a resumed distillation reads it again from wherever it is run.
    # c_out measured per data kind: "lcm" on MNIST (1-step FID 13.2 against 70.5), "complement" on
    # the swiss roll (1-step chamfer 64 against 1162) (docs/results/distill.md).
    distill = DistillConfig(method=method, teacher=str(Path(teacher_dir).resolve()),
                            teacher_guidance=s.guidance if conditional else 1.0,
                            sigma_boundary=lo, sigma_top=min(s.sigma_max or hi, hi),
                            c_out="lcm" if kind == "images" else "complement")
    # The best of 1, 2 and 4 steps on every student measured (docs/results/distill.md): 4 on
    # MNIST (FID), 2 on the swiss roll (chamfer).
    steps = 4 if kind == "images" else 2
    sample = dataclasses.replace(s, sampler="consistency", steps=steps, eta=0.0, eta_low=0.0, eta_switch=0.0, grid="",
                                 guidance=1.0)
    train = dataclasses.replace(teacher.train, **STUDENT_TRAIN["images" if kind == "images" else "points"])
    cfg = apply_overrides(dataclasses.replace(teacher, train=train, sample=sample, distill=distill), sets or [])
    return validate_config(guidance_input(cfg, conditional, teacher_dir))


def guidance_input(cfg: RunConfig, conditional: bool, where) -> RunConfig:
    """A student asked for a guidance range (distill.guidance_max > 0) takes w as an input: its
    network gets a guidance embedding, and it samples at the teacher's scale, held in the range."""
    d = cfg.distill
    if d.guidance_max <= 0:
        return cfg
    if not conditional:
        raise DenoiselabError(f"{where} is an unconditional model: a guidance range needs a class- or "
                              "text-conditional teacher")
    if d.method != "cd":
        raise DenoiselabError("a guidance range needs the teacher's guided ODE: use --method cd")
    if not 0 <= d.guidance_min <= d.guidance_max:
        raise DenoiselabError(f"guidance range [{d.guidance_min:g}, {d.guidance_max:g}] is empty: give "
                              "0 <= w_min <= w_max")
    w = min(max(d.teacher_guidance, d.guidance_min), d.guidance_max)
    model = dataclasses.replace(cfg.model, options={**cfg.model.options, "guidance_embed": True})
    return dataclasses.replace(cfg, model=model, sample=dataclasses.replace(cfg.sample, guidance=w))


def distill_parts(cfg: RunConfig, data: TensorData, device=None) -> tuple[torch.nn.Module, ConsistencyObjective]:
    """(the student network, at the teacher's weights; the distillation objective)."""
    d = cfg.distill
    if cfg.train.steps < 1:
        raise DenoiselabError("a distillation needs at least one step: --set steps=1000")
    teacher_dir = Path(d.teacher)
    if not (teacher_dir / "config.json").is_file():
        raise DenoiselabError(f"the teacher run {teacher_dir} of this student is gone: restore it to resume")
    teacher = load_run(teacher_dir, device=device)
    check_teacher(teacher.config, teacher_dir)
    net = build_net(cfg, data)
    # A w-conditioned student's guidance embedding is its own (it starts at zero); every other
    # weight is the teacher's.
    try:  # strict=False still refuses a shape that does not fit
        missing, unexpected = net.load_state_dict(teacher.net.state_dict(), strict=False)
    except RuntimeError as e:
        raise DenoiselabError(f"the teacher's weights do not fit the student's network: {str(e).splitlines()[0]}") \
            from None
    missing = [k for k in missing if not k.startswith("guidance_emb.")]
    if missing or unexpected:
        raise DenoiselabError(f"the teacher's weights do not fit the student's network: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    teacher.net.requires_grad_(False)
    null = getattr(data, "null_cond", None)
    teacher_den = teacher_at = None
    if d.method == "cd":
        teacher_den = guided(teacher.denoiser, scale=d.teacher_guidance, uncond=null)

        def teacher_at(w):  # a w-conditioned student's teacher: one scale per sample
            return guided(teacher.denoiser, scale=w, uncond=null)
    sigma_range = (d.sigma_boundary or teacher.denoiser.sigma_range[0], d.sigma_top or cfg.sample.sigma_max)
    objective = ConsistencyObjective(d, cfg.train.steps, lambda n: build_denoiser(cfg, n), teacher_den, sigma_range,
                                     p_uncond=cfg.diffusion.p_uncond, null=null, net=net, teacher_at=teacher_at)
    return net, objective
