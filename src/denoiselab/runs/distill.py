"""Few-step students: the config and the parts of a distillation (``denoiselab distill``).

A student is a run like any other: its config is its teacher's with a ``distill`` section, its
few-step sampler and the distillation's own training settings; it starts from the teacher's (EMA)
weights. A consistency student's denoiser is the teacher's process under the boundary condition
(``runs.build.student_denoiser``); a reflow student is a flow, retrained on pairs its teacher drew
(``reflow_pairs``) and sampled with Euler. Sampling, evaluation, editing and the report take it
as they take any run.
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
from ..losses import ConsistencyObjective, ReflowObjective
from .build import build_denoiser, build_net
from .load import load_run, read_config
from .validate import validate_config

METHODS = ("cd", "ct", "reflow")

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
    """A teacher is a diffusion or flow run that is not itself a consistency student (a reflow
    student is a flow, and may be reflowed again: ``student_config`` refuses it other methods)."""
    kind = cfg.diffusion.kind
    if kind == "classifier":
        raise DenoiselabError(f"{where} is a noise-aware classifier: distil a diffusion or flow run")
    if kind == "denoise":
        raise DenoiselabError(f"{where} is a single-step denoiser: distil a diffusion or flow run")
    if kind not in ("vp", "flow"):
        raise DenoiselabError(f"{where} is a {kind!r} run: distil a diffusion or flow run")
    if cfg.distill.method and cfg.distill.method != "reflow":
        raise DenoiselabError(f"{where} is already a student (distilled from {cfg.distill.teacher}): "
                              "distil its teacher instead")


def student_config(teacher_dir: Path, method: str = "cd", sets: Optional[list[str]] = None,
                   kind: Optional[str] = None) -> RunConfig:
    """The config of a student of the run in ``teacher_dir``, before ``--set`` and after it.
    ``kind`` is the teacher's data kind ("points" or "images"; read from its checkpoint if None)."""
    if method not in METHODS:
        raise DenoiselabError(f"unknown distillation method {method!r}: choose cd (from the teacher's ODE), "
                              "ct (consistency training, no teacher) or reflow (a flow teacher's pairs)")
    teacher = read_config(teacher_dir)
    check_teacher(teacher, teacher_dir)
    if teacher.distill.method == "reflow" and method != "reflow":
        # Consistency distillation noises training data with independent noise, and a reflowed flow
        # is trained only on its own coupling's points: its ODE step there is off (docs/results/distill.md).
        raise DenoiselabError(f"{teacher_dir} is a reflow student: --method {method} would noise data off its "
                              "pairs' paths; reflow it again (--method reflow) or distil its teacher")
    if method == "reflow":
        return reflow_config(teacher, teacher_dir, sets, kind)
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


# Reflow: pairs per data kind, and the student's training and sampling. The teacher's own
# recipe at the student's lower rate, from its weights (Liu et al. 2023 start 2-rectified flows
# from the 1-rectified one).
PAIRS = "reflow_pairs.pt"
REFLOW_PAIRS = {"points": 65536, "images": 10000}
# Euler in 4 uniform steps in tau: the best of 1, 2 and 4 steps on the quadratic and uniform grids
# on every swiss-roll reflow student measured (docs/results/distill.md, "Flow teachers").
REFLOW_STEPS, REFLOW_GRID = 4, "uniform"


def reflow_config(teacher: RunConfig, teacher_dir: Path, sets: Optional[list[str]], kind: Optional[str]) -> RunConfig:
    """A reflow student's config: a flow like its teacher, sampled with Euler in few steps
    (``REFLOW_STEPS`` on ``REFLOW_GRID``)."""
    if teacher.diffusion.kind != "flow":
        raise DenoiselabError(f"{teacher_dir} is a {teacher.diffusion.kind!r} run: reflow retrains a flow "
                              "(diffusion.kind=flow); distil a diffusion run with --method cd")
    if teacher.model.options.get("num_classes") or teacher.model.options.get("cond_dim"):
        raise DenoiselabError(f"{teacher_dir} is a conditional flow: reflow takes unconditional flows; "
                              "use --method cd for a conditional teacher")
    if kind is None:
        kind = load_run(teacher_dir).kind
    distill = DistillConfig(method="reflow", teacher=str(Path(teacher_dir).resolve()))
    sample = dataclasses.replace(teacher.sample, sampler="euler", steps=REFLOW_STEPS, eta=0.0, eta_low=0.0,
                                 eta_switch=0.0, grid=REFLOW_GRID, guidance=1.0)
    train = dataclasses.replace(teacher.train, **STUDENT_TRAIN["images" if kind == "images" else "points"])
    cfg = apply_overrides(dataclasses.replace(teacher, train=train, sample=sample, distill=distill), sets or [])
    return validate_config(cfg)


def reflow_pairs(cfg: RunConfig, teacher, out: Optional[Path] = None, log=None,
                 progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise z, the teacher's sample x1 = ODE(z)): ``distill.pairs`` of them (0: ``REFLOW_PAIRS``
    by data kind), each solved by ``distill.solver`` in ``distill.pair_steps`` steps (0: the
    teacher's sample.steps) on its default grid from z ~ N(0, I), seeded by train.seed (Liu et al.
    2023, Algorithm 1). Kept in ``out / PAIRS`` once drawn."""
    from ..io import atomic_write
    from ..rng import SampleNoise
    from ..samplers.api import generate, start_point

    path = Path(out) / PAIRS if out is not None else None
    d = cfg.distill
    n = d.pairs or REFLOW_PAIRS[teacher.kind]
    steps = d.pair_steps or teacher.config.sample.steps
    shape = teacher.sample_shape
    if path is not None and path.is_file():
        pairs = torch.load(path, map_location="cpu", weights_only=True)
        if tuple(pairs["noise"].shape) == (n, *shape):  # pairs of other settings are drawn again
            return pairs["noise"], pairs["samples"]
    if log:
        log(f"drawing {n} reflow pairs from the teacher: {d.solver}, {steps} steps")
    seed = cfg.train.seed
    samples, _ = generate(teacher.denoiser, n, shape, sampler=d.solver, steps=steps, seed=seed,
                          batch_size=4096 if teacher.kind == "points" else 250, progress=progress)
    noise = start_point(teacher.denoiser, SampleNoise(seed, n, 0), n, shape, None, 0.0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save({"noise": noise, "samples": samples}, tmp))
    return noise, samples


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


def distill_parts(cfg: RunConfig, data: TensorData, device=None, out: Optional[Path] = None,
                  log=None, progress: bool = False) -> tuple[torch.nn.Module, object]:
    """(the student network, at the teacher's weights; the distillation objective). A reflow
    student's pairs are drawn once and kept in ``out`` (``PAIRS``), so a resumed one trains on the same."""
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
    if d.method == "reflow":
        noise, samples = reflow_pairs(cfg, teacher, out, log=log, progress=progress)
        return net, ReflowObjective(noise, samples, teacher.denoiser.time_scale)
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


# -- The student's sampling levels, measured --------------------------------------------------

LEVEL_CANDIDATES = 16   # log-spaced noise levels between the boundary and the top that the search tries
IMAGE_LEVEL_CANDIDATES = 8  # fewer for image students, each of whose scores samples and reads 500 images
MAX_LEVEL_STEPS = 4     # step counts searched: 2 .. this
SEARCH_SEED = 1         # the search's samples; benchmarks score seed 0 against their own reference draw
SEARCH_POINTS = 2048    # samples per score, and points in the reference draw
SEARCH_IMAGES = 500     # samples per score of an image student


def level_candidates(lo: float, hi: float, n: Optional[int] = None) -> list[float]:
    """n (default ``LEVEL_CANDIDATES``) noise levels spaced evenly in log sigma strictly between lo and hi."""
    import math

    n = n or LEVEL_CANDIDATES
    return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * (i + 1) / (n + 1)) for i in range(n)]


def search_levels(score, top: float, candidates: list[float], max_steps: Optional[int] = None,
                  log=None) -> dict[int, tuple[list[float], float]]:
    """{steps: (levels highest first, score)} for 1 .. max_steps, lower score better: ``top`` alone
    at one step; each further step adds the candidate level that scores best with the levels of
    one step fewer, then every level below the top is moved, one at a time, to the candidate that
    scores best there (one pass of coordinate descent). Greedy: a step count costs at most
    steps x len(candidates) scores, each level set scored once."""
    seen: dict[tuple, float] = {}
    plain = score

    def score(levels):
        key = tuple(levels)
        if key not in seen:
            seen[key] = plain(levels)
        return seen[key]

    best = {1: ([top], score([top]))}
    for k in range(2, (max_steps or MAX_LEVEL_STEPS) + 1):
        prev = best[k - 1][0]
        trials = [sorted(prev + [c], reverse=True) for c in candidates if c not in prev]
        scored = [(score(t), t) for t in trials]
        value, levels = min(scored, key=lambda p: p[0])
        for i in range(1, k):
            above = levels[i - 1]
            below = levels[i + 1] if i + 1 < k else 0.0
            for c in candidates:
                if below < c < above and c != levels[i]:
                    trial = levels[:i] + [c] + levels[i + 1:]
                    v = score(trial)
                    if v < value:
                        value, levels = v, trial
        best[k] = (levels, value)
        if log:
            log(f"{k} steps: levels {', '.join(f'{x:.3g}' for x in levels)}, score {value:.4g}")
    return best


def _draw_at(run, num: int):
    """draw(levels, grid="levels", grid_opts=None): ``num`` consistency samples of ``run`` (seed
    ``SEARCH_SEED``) at ``levels``, or, with another ``grid``, on that grid's len(levels) steps."""
    from ..samplers.api import generate
    from .plan import sampling_plan

    start = sampling_plan(run, steps=1).start_moments()

    def draw(levels: list[float], grid: str = "levels", grid_opts: Optional[dict] = None) -> torch.Tensor:
        x, _ = generate(run.denoiser, num, run.sample_shape, sampler="consistency", steps=len(levels), seed=SEARCH_SEED,
                        grid=grid, grid_opts={"sigmas": levels} if grid == "levels" else grid_opts, start=start)
        return x

    return draw


def points_score(run, num: Optional[int] = None):
    """Chamfer distance (``evaluation.chamfer_distance``) of ``num`` samples drawn at given levels
    (``_draw_at``) against a fresh draw of the run's 2D data set (neither the training draw nor the
    benchmarks')."""
    from ..data import load_toy
    from ..evaluation import chamfer_distance

    num = num or SEARCH_POINTS
    ref = load_toy(run.config.data.name, num, seed=4242)
    draw = _draw_at(run, num)
    return lambda levels, grid="levels", grid_opts=None: chamfer_distance(draw(levels, grid, grid_opts), ref)


def image_score(run, num: Optional[int] = None, log=None):
    """Domain FID (``evaluation.images.domain_extractor``) of ``num`` (default 500) samples drawn
    at given levels (``_draw_at``) against the first of the evaluator's two reference halves
    (``evaluation.images.reference_halves``), which it uses only for its floor: FID itself, in
    ``evaluate`` and the benchmarks, is measured against the second."""
    from ..data import build_dataset
    from ..evaluation.frechet import frechet_distance_features
    from ..evaluation.images import domain_extractor, extract, reference_features, reference_halves
    from ..io import cache_folder

    num = num or SEARCH_IMAGES
    data = build_dataset(run.config.data.name, run.config.data.options)
    cache = cache_folder()
    extractor = domain_extractor(data, cache, log=log)
    feats = reference_features(extractor, data, cache, log)
    ref = feats[reference_halves(len(feats))[0]]
    draw = _draw_at(run, num)
    return lambda levels, grid="levels", grid_opts=None: frechet_distance_features(
        extract(extractor, draw(levels, grid, grid_opts)), ref)


def measure_levels(run, log=None, images: bool = False) -> Optional[dict]:
    """Search a student's sampling levels (``search_levels``) and store them with it
    (``runs.plan.LEVELS``): for each step count the levels that beat the student's default grid,
    and the best step count. 2D students are scored by ``points_score``; unconditional pixel image
    students, with ``images``, by ``image_score``. None (nothing written) for any other run."""
    import json
    import time

    from ..io import atomic_write
    from .plan import LEVELS, sampling_plan

    if not run.config.distill.method:
        return None
    unconditional_pixels = (run.kind == "images" and not run.config.latent.autoencoder and not
                            run.config.model.options.get("num_classes") and not run.config.model.options.get("cond_dim"))
    if run.kind != "points" and not (images and unconditional_pixels):
        return None
    path = Path(run.run_dir) / LEVELS
    # The search compares against the student's grid, not against levels it stored before (kept
    # until the new ones replace them).
    from ..samplers.grids import default_grid

    grid = run.config.sample.grid or default_grid(run.config.sample.sampler, run.denoiser)
    first = sampling_plan(run, steps=1, grid=grid).grid_opts
    if "sigma_max" not in first:  # a grid not placed by sigma (a flow's, from pure noise): no level to start at
        if log:
            log(f"no levels measured: the student's {grid} grid does not start at a noise level")
        return None
    t0 = time.perf_counter()
    score = points_score(run) if run.kind == "points" else image_score(run, log=log)
    top = float(first["sigma_max"])
    lo = max(run.config.distill.sigma_boundary, 1e-3 * top)
    n = LEVEL_CANDIDATES if run.kind == "points" else IMAGE_LEVEL_CANDIDATES
    found = search_levels(score, top, level_candidates(lo, top, n), log=log)
    default = {}
    for k in found:
        plan = sampling_plan(run, steps=k, grid=grid)
        default[k] = score([top] * k, plan.grid, plan.grid_opts)
    levels = {k: v[0] for k, v in found.items() if k > 1 and v[1] < default[k]}
    scores = {k: min(found[k][1], default[k]) for k in found}
    best = min(scores, key=scores.get)
    record = {"metric": "chamfer" if run.kind == "points" else "domain FID", "seed": SEARCH_SEED, "steps": best,
              "levels": {str(k): v for k, v in levels.items()},
              "scores": {str(k): scores[k] for k in scores}, "default_grid_scores": {str(k): default[k] for k in default},
              "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    return record
