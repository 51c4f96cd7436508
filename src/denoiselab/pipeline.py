"""Builds the pieces of a run from its config: schedule, network, denoiser, data, objective.

The CLI and the benchmarks go through here, so a run directory is sampled exactly the way it
was trained.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from . import process
from .config import DiffusionConfig, RunConfig
from .data import TensorData, build_dataset
from .denoiser import Denoiser, FlowDenoiser
from .device import module_device, place
from .errors import DenoiselabError
from .models import build_model
from .schedules import NoiseSchedule, make_schedule
from .training.checkpoint import load_latest
from .training.trainer import CHECKPOINT

if TYPE_CHECKING:
    from .samplers.start import DataMoments

CONFIG = "config.json"


def _warn(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)
# Flow networks see tau * 1000, the range of the VP step index their time embeddings are built for.
FLOW_TIME_SCALE = 1000.0


def build_schedule(d: DiffusionConfig) -> NoiseSchedule:
    if d.schedule == "custom":
        return make_schedule("custom", betas=list(d.betas))
    if d.schedule == "cosine":
        return make_schedule("cosine", d.T)
    return make_schedule(d.schedule, d.T, beta_start=d.beta_start, beta_end=d.beta_end)


def build_data(cfg: RunConfig) -> TensorData:
    return build_dataset(cfg.data.name, cfg.data.options, cfg.data.num, cfg.train.seed)


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
    if d.kind in ("denoise", "classifier"):
        return None  # a single-step denoiser or a classifier is not a diffusion model: no sampler can use it
    if d.kind == "flow":
        return FlowDenoiser(net, time_scale=FLOW_TIME_SCALE, clip_x0=d.clip_x0 or None)
    if d.kind != "vp":
        raise DenoiselabError(f"diffusion kind {d.kind!r} is not available: use vp, flow, denoise or classifier")
    return Denoiser(net, build_schedule(d), d.parameterization, clip_x0=d.clip_x0 or None)


def drop_labels(cond: Optional[torch.Tensor], p_uncond: float, generator: torch.Generator,
                null: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1): each label is replaced
    by -1 ("no label", which every conditional network maps to its null class) with prob. p_uncond;
    each row of an (N, D) embedding condition by ``null`` (the empty prompt's embedding)."""
    if cond is None or p_uncond <= 0:
        return cond
    drop = (torch.rand(cond.shape[:1], generator=generator) < p_uncond).to(cond.device)
    if cond.is_floating_point():
        if null is None:
            raise DenoiselabError("embedding conditions need a null embedding to drop to (the empty prompt's)")
        return torch.where(drop.view(-1, *([1] * (cond.ndim - 1))), null.to(cond.dtype).expand_as(cond), cond)
    return torch.where(drop, torch.full_like(cond, -1), cond)


def build_objective(cfg: RunConfig, data: Optional[TensorData] = None):
    """objective(net, x0, cond, generator) -> loss, for the trainer."""
    d = cfg.diffusion
    null = getattr(data, "null_cond", None)  # text data: dropped prompts become the empty prompt
    if d.kind == "denoise":
        if d.sigma <= 0:
            raise DenoiselabError("a single-step denoiser needs a noise level: --set diffusion.sigma=0.5")

        def denoise_objective(net, x0, cond, generator):
            return process.denoise_loss(net, x0, torch.randn(x0.shape, generator=generator).to(x0.device), d.sigma)

        return denoise_objective
    if d.kind == "flow":

        def flow_objective(net, x0, cond, generator):
            # Conditional flow matching with tau ~ U[0, 1] (Lipman et al. 2023, eq. 23).
            tau = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
            eps = torch.randn(x0.shape, generator=generator).to(x0.device)
            cond = drop_labels(cond, d.p_uncond, generator, null)
            return process.flow_loss(net, x0, tau, eps, cond, time_scale=FLOW_TIME_SCALE)

        return flow_objective
    if d.kind == "classifier":
        schedule = build_schedule(d)

        def classifier_objective(net, x0, cond, generator):
            # Noise-aware classifier (Dhariwal & Nichol 2021, sec. 4): cross-entropy of p(y | x_t, t)
            # at t uniform over the schedule, x_t from q(x_t | x_0) (Ho et al. 2020, eq. 4).
            if cond is None:
                raise DenoiselabError("a classifier trains on labelled data: choose a data set with classes "
                                      "(mnist, digits, a folder with one sub-folder per class)")
            t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
            eps = torch.randn(x0.shape, generator=generator).to(x0.device)
            return F.cross_entropy(net(process.q_sample(schedule, x0, t, eps), t.to(x0.device, x0.dtype)).float(), cond)

        return classifier_objective
    if d.kind != "vp":
        raise DenoiselabError(f"diffusion kind {d.kind!r} is not available: use vp, flow, denoise or classifier")
    schedule = build_schedule(d)
    if d.parameterization not in ("eps", "x0", "v"):
        raise DenoiselabError(f"unknown parameterization {d.parameterization!r}: use eps, x0 or v")

    def objective(net, x0, cond, generator):
        # Drawn on the CPU generator (the run's stream, saved in checkpoints), used on x0's device.
        t = process.sample_t(schedule, x0.shape[0], generator, d.t_sampling, d.p_mean, d.p_std,
                              (d.t_sigma_min, d.t_sigma_max), d.t_full)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        cond = drop_labels(cond, d.p_uncond, generator, null)
        extra = None
        if d.input_perturbation > 0:
            extra = d.input_perturbation * torch.randn(x0.shape, generator=generator).to(x0.device)
        return process.diffusion_loss(net, schedule, d.parameterization, x0, t, eps, cond, min_snr=d.min_snr,
                                      perturbation=extra)

    return objective


def resolve_config(cfg: RunConfig, data: TensorData) -> RunConfig:
    """Fill in what a preset leaves to the data (``num_classes: -1`` = the data's class count) and
    check that a class-conditional model or a classifier gets labelled data it can represent."""
    import dataclasses

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
    if cfg.diffusion.kind == "classifier" and not data.num_classes:
        raise DenoiselabError(f"a classifier trains on labelled data, but {cfg.data.name} has no labels")
    s = cfg.sample
    if cfg.diffusion.kind in ("vp", "flow") and not (s.sigma_min and s.sigma_max):
        # The data's noise range, derived once here and stored with the run (grids.fit_sigma_range);
        # a preset that stores a measured range (``mnist``) keeps it.
        from .samplers.grids import fit_sigma_range

        lo, hi = fit_sigma_range(data.x, data.kind)
        cfg = dataclasses.replace(cfg, sample=dataclasses.replace(s, sigma_min=s.sigma_min or lo,
                                                                   sigma_max=s.sigma_max or hi))
    return cfg


def data_info(data: TensorData) -> dict:
    """What sampling needs to know about the data, stored in every checkpoint."""
    info = {"kind": data.kind, "sample_shape": list(data.sample_shape), "num_classes": data.num_classes,
            "class_names": list(data.class_names)}
    if getattr(data, "null_cond", None) is not None:
        from .text import ENCODER

        info["condition"] = "text"
        info["text_encoder"] = ENCODER
    return info


def make_trainer(cfg: RunConfig, out: Path, data: TensorData, progress: bool = True, device=None, runtime=None):
    """The trainer of a run on ``device`` (default the CPU), or in the processes of ``runtime``
    (``training.runtime``: one process, or Accelerate's data-parallel ones)."""
    from .training.trainer import Trainer

    cfg = resolve_config(cfg, data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # the initial weights depend on the run's seed alone
        net = build_net(cfg, data)
    return Trainer(net, build_objective(cfg, data), data, cfg.train, out, cfg.to_dict(), progress=progress,
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
    from .samplers.start import fit_moments

    x = data.x
    if data.kind == "images" and data.hflip:
        x = torch.cat([x, x.flip(-1)])
    return fit_moments(x)


def preview_hook(cfg: RunConfig, data: TensorData, out: Path):
    """Image runs: a sample grid every preview_every steps (2D runs need none), drawn with DDIM
    (25 steps) from fixed seeds so successive previews show the same samples maturing."""
    if data.kind != "images" or not cfg.train.preview_every or cfg.diffusion.kind not in ("vp", "flow"):
        return None
    from .samplers.api import generate
    from .viz.images import save_grid

    def on_preview(step: int, net: torch.nn.Module) -> None:
        net.eval()
        x, _ = generate(build_denoiser(cfg, net), 36, data.sample_shape, sampler="ddim", steps=25, seed=0)
        save_grid(x, Path(out) / "previews" / f"step{step:07d}.png", nrow=6)

    return on_preview


@dataclass
class LoadedRun:
    config: RunConfig
    net: torch.nn.Module
    denoiser: Denoiser
    step: int
    run_dir: Path
    info: dict
    moments: Optional["DataMoments"] = None  # the data's, stored at training (None: fitted on demand)

    @property
    def kind(self) -> str:
        return self.info.get("kind", "points")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.info.get("sample_shape", (2,)))

    def data_sigma_range(self) -> tuple[float, float]:
        """The run's (sigma_min, sigma_max): the data's (grids.fit_sigma_range) or the preset's
        measured one, stored at training time;
        runs trained before it was stored fit it from their data set now (once per load), and
        fall back to the model's trained range if that data set cannot be read here."""
        s = self.config.sample
        if s.sigma_min and s.sigma_max:
            return s.sigma_min, s.sigma_max
        if getattr(self, "_fitted", None) is None:
            from .samplers.grids import fit_sigma_range

            try:
                cfg = self.config
                data = build_dataset(cfg.data.name, cfg.data.options, min(cfg.data.num, 100_000), cfg.train.seed)
                self._fitted = fit_sigma_range(data.x, data.kind)
            except DenoiselabError as e:
                _warn(f"warning: cannot read {self.config.data.name!r} to fit the grid's noise range ({e}); "
                      "using the model's whole trained range")
                self._fitted = self.denoiser.sigma_range
        return self._fitted

    def data_moments(self) -> Optional["DataMoments"]:
        """The data's moments (``samplers.start``): stored in the checkpoint at training; runs
        trained before they were stored fit them from their data set now (once per load), or
        have none (None: a standard-normal start) if that data set cannot be read here."""
        if self.moments is None and not getattr(self, "_moments_tried", False):
            self._moments_tried = True
            cfg = self.config
            try:
                data = build_dataset(cfg.data.name, cfg.data.options, min(cfg.data.num, 100_000), cfg.train.seed)
                self.moments = fit_data_moments(data)
            except DenoiselabError as e:
                _warn(f"warning: cannot read {cfg.data.name!r} to fit the data's moments ({e}); "
                      "sampling starts from N(0, I)")
        return self.moments


def eta_text(record: dict) -> str:
    """" (eta 4, 8 at sigma <= 3)" for a plan's or a pictures.json record's eta ("" without one)."""
    parts = [f"eta {record['eta']:g}"] if "eta" in record else []
    if "eta_switch" in record:
        parts.append(f"{record.get('eta_low', 0.0):g} at sigma <= {record['eta_switch']:g}")
    return f" ({', '.join(parts)})" if parts else ""


@dataclass
class SamplingPlan:
    """How to sample a run: the keyword arguments of ``samplers.api.generate`` (with ``opts`` the
    sampler's own options), decided by :func:`sampling_plan`."""
    sampler: str
    steps: int
    grid: str
    grid_opts: dict
    opts: dict
    precision: str = "none"
    start: str = "auto"                  # auto, moments or gaussian (see start_moments)
    run: Optional["LoadedRun"] = None    # whose data moments a moment-matched start uses

    def start_moments(self) -> Optional["DataMoments"]:
        """The moments sampling starts from, or None for x_T ~ N(0, I) (``start_moments``)."""
        return start_moments(self.run, self.start, self.sampler, self.opts) if self.run is not None else None

    def kwargs(self) -> dict:
        return dict(sampler=self.sampler, steps=self.steps, grid=self.grid, grid_opts=self.grid_opts,
                    precision=self.precision, start=self.start_moments(), **self.opts)

    def eta_record(self) -> dict:
        """eta, and eta_low with eta_switch where the steps below a noise level take another eta."""
        keys = ("eta", "eta_low", "eta_switch") if self.opts.get("eta_switch", 0) > 0 else ("eta",)
        return {k: self.opts[k] for k in keys if k in self.opts}

    def describe(self) -> str:
        eta = eta_text(self.eta_record())
        bf = f", network in {self.precision}" if self.precision != "none" else ""
        return f"{self.sampler}{eta}, {self.steps} steps on the {self.grid} grid{bf}"

    def start_note(self) -> str:
        """", starting from the data's moments" when it does ("" for N(0, I)), for the logs."""
        return ", starting from the data's moments" if self.start_moments() is not None else ""

    def record(self, nfe: int, num: int, **extra) -> dict:
        """What a run's pictures.json says about how its samples were drawn."""
        eta = self.eta_record()
        start = "moments" if self.start_moments() is not None else "gaussian"
        return {"sampler": self.sampler, "steps": self.steps, "grid": self.grid, **eta, "precision": self.precision,
                "start": start, "nfe": nfe, "num": num, **extra}

    def ends(self) -> str:
        """The grid's sigma range, if it is placed by one ("" otherwise)."""
        g = self.grid_opts
        return f"sigma {g['sigma_max']:.3g} to {g['sigma_min']:.3g}" if "sigma_max" in g and "sigma_min" in g else ""


def sampling_plan(run: LoadedRun, *, sampler: Optional[str] = None, steps: Optional[int] = None,
                  grid: Optional[str] = None, grid_opts: Optional[dict] = None,
                  opts: Optional[dict] = None, start: Optional[str] = None) -> SamplingPlan:
    """The one place that decides how a run is sampled when a command leaves something out.

    - sampler: the run's stored one (``config.sample.sampler``, the measured best of its preset);
    - steps: the stored steps if the sampler is the stored one, else the sampler's default
      (``samplers.default_steps``);
    - grid: the stored grid for the stored sampler, else the sampler's default
      (``grids.default_grid``); a karras or logsnr grid spans the data's noise range
      (``LoadedRun.data_sigma_range``, clamped into the model's) unless given ends;
    - eta: the stored one for the stored sampler, if set, and likewise eta_low below eta_switch;
    - precision: the stored ``config.sample.precision`` (the network's autocast while sampling);
    - start: ``auto`` (``SamplingPlan.start_moments``: deterministic samplers start from the
      noised data's mean and covariance, stochastic ones from N(0, I)), ``moments`` or ``gaussian``.
    """
    from .samplers import SAMPLERS, default_steps, takes_option
    from .samplers.grids import SIGMA_GRIDS, clamp_sigma_range, default_grid

    require_sampler(run)
    s = run.config.sample
    own = sampler is None or sampler == s.sampler
    sampler = sampler or s.sampler
    if sampler not in SAMPLERS:
        raise DenoiselabError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    steps = steps or (s.steps if own else default_steps(sampler, run.denoiser))
    grid = grid or (s.grid if own and s.grid else default_grid(sampler, run.denoiser))
    grid_opts = dict(grid_opts or {})
    if grid in SIGMA_GRIDS and not ("sigma_min" in grid_opts and "sigma_max" in grid_opts):
        lo, hi = clamp_sigma_range(run.denoiser, *run.data_sigma_range())
        if grid_opts.get("sigma_max", hi) <= lo:  # a user's sigma_max below the fitted sigma_min
            lo = run.denoiser.sigma_range[0]
        if grid_opts.get("sigma_min", lo) >= hi:  # a user's sigma_min above the fitted sigma_max
            hi = run.denoiser.sigma_range[1]
        grid_opts = {"sigma_min": lo, "sigma_max": hi, **grid_opts}
    opts = dict(opts or {})
    if own and s.eta > 0 and takes_option(sampler, "eta"):
        opts.setdefault("eta", s.eta)
    if own and s.eta_switch > 0 and takes_option(sampler, "eta_switch"):
        opts.setdefault("eta_low", s.eta_low)
        opts.setdefault("eta_switch", s.eta_switch)
    start = _check_start(start or "auto")
    return SamplingPlan(sampler, int(steps), grid, grid_opts, opts, s.precision, start, run)


START_MODES = ("auto", "moments", "gaussian")


def _check_start(start: str) -> str:
    if start not in START_MODES:
        raise DenoiselabError(f"unknown start {start!r}: choose one of {', '.join(START_MODES)}")
    return start


def start_moments(run: LoadedRun, start: str, sampler: str, opts: dict) -> Optional["DataMoments"]:
    """The moments ``sampler`` with ``opts`` starts from on ``run``, or None for x_T ~ N(0, I):
    ``moments`` always, ``gaussian`` never, ``auto`` for deterministic samplers only, which carry
    a mismatched start to their samples where stochastic ones forget it (README, "Where sampling
    starts"). Diffusion and flow runs have moments; a run trained before they were stored fits
    them from its data set on first use."""
    from .samplers import is_deterministic

    if _check_start(start) == "gaussian" or run.config.diffusion.kind not in ("vp", "flow"):
        return None
    if start == "auto" and not is_deterministic(sampler, opts):
        return None
    moments = run.data_moments()
    if moments is None and start == "moments":
        raise DenoiselabError(f"{run.run_dir} has no data moments and its data set cannot be read here: "
                              "use --start gaussian (or auto)")
    return moments


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise DenoiselabError(f"run directory not found: {run_dir} (train one with `denoiselab train --preset NAME --out {run_dir}`)")
    if not path.is_file():
        raise DenoiselabError(f"{run_dir} has no {CONFIG}: is it a run directory made by `denoiselab train`?")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise DenoiselabError(f"{path} is not a valid run config ({e}): retrain or fix the file") from None


# Settings a resumed run may take from the command line without becoming another run: how long
# it trains (the LR schedule then spans the new length), how it logs, saves and previews.
RESUME_FREE = ("train.steps", "train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.preview_every",
               "train.threads", "train.compile", "train.autocast", "train.grad_accum", "sample.")
# Settings that fix what a checkpoint holds: never changed on resume.
RESUME_FIXED = ("model.", "data.", "diffusion.", "preset")


def config_diff(a: RunConfig, b: RunConfig) -> dict[str, tuple]:
    """{"section.field": (value in a, value in b)} for every setting that differs."""
    da, db = a.to_dict(), b.to_dict()
    out = {}
    for sec in sorted(set(da) | set(db)):
        va, vb = da.get(sec), db.get(sec)
        if isinstance(va, dict) and isinstance(vb, dict):
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    out[f"{sec}.{k}"] = (va.get(k), vb.get(k))
        elif va != vb:
            out[sec] = (va, vb)
    return out


def resolve_train_config(out: Path, preset: Optional[str], sets: list[str], resume: bool,
                         default_preset: str = "swiss-roll", log=None) -> RunConfig:
    """The config of ``train --out OUT [--preset P] [--set ...] [--resume]``.

    A fresh run is the preset plus --set. With --resume (the command a preemptible job repeats):
    if OUT holds no config yet, the run starts as a fresh one would; otherwise the run's own
    config is kept, and the command line may only
    - restate it (the same --preset and --set as the run was started with),
    - change by --set what a run can change and stay one run (RESUME_FREE, e.g. train.steps to
      train longer), or training settings such as lr (e.g. after a NaN loss), logged as changes.
    A different preset, or a --set of the model, data or diffusion process, is an error naming the
    settings that differ: resume without --preset/--set, or choose another --out.
    """
    from .config import apply_overrides, get_preset, validate_config

    out = Path(out)
    stored = read_config(out) if resume and (out / CONFIG).is_file() else None
    if stored is None:
        return validate_config(apply_overrides(get_preset(preset or default_preset), sets))
    via_set = config_diff(stored, apply_overrides(stored, sets))
    asked = apply_overrides(get_preset(preset), sets) if preset else apply_overrides(stored, sets)
    diff = config_diff(stored, asked)
    fixed = sorted((k for k in diff if k.startswith(RESUME_FIXED)), key=lambda k: k != "preset")
    foreign = [k for k in diff if k not in via_set and not k.startswith(RESUME_FREE)]
    bad = fixed or foreign
    if bad:
        shown = "; ".join(f"{k} is {diff[k][0]!r} in the run, {diff[k][1]!r} asked" for k in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DenoiselabError(f"{out} holds a run with another config ({shown}{more}): resume it as it is with "
                              f"`denoiselab train --out {out} --resume`, or choose another --out")
    if diff and log:
        log("resuming with changed settings: " + ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in diff.items()))
    return validate_config(asked)


def load_run(run_dir: Path, use_ema: bool = True, device=None) -> LoadedRun:
    """Load a trained run for sampling: the architecture comes from the checkpoint's own config.
    The weights are read on the CPU and the network moved to ``device`` (default: the CPU), so a
    checkpoint written on any device loads on any other."""
    run_dir = Path(run_dir)
    read_config(run_dir)  # clear error if this is not a run directory
    # The newest whole checkpoint: a corrupt latest one is named on stderr and the previous used.
    ck = load_latest(run_dir, log=_warn)
    if ck is None:
        raise DenoiselabError(f"{run_dir} has no checkpoint yet: train it (or resume it with "
                              f"`denoiselab train --out {run_dir} --resume`)")
    cfg = RunConfig.from_dict(ck["config"])
    net = build_net(cfg)
    weights = ck["ema"] if (use_ema and ck["ema"] is not None) else ck["model"]
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise DenoiselabError(f"checkpoint weights do not fit the model in its config: {str(e).splitlines()[0]}") from None
    if device is not None:
        net = place(net, device)
    net.eval()
    from .samplers.start import DataMoments

    return LoadedRun(cfg, net, build_denoiser(cfg, net), ck["step"], run_dir, ck["extra"],
                     DataMoments.from_tensors(ck.get("moments") or {}))


def require_sampler(run: LoadedRun) -> None:
    if run.denoiser is None and run.config.diffusion.kind == "classifier":
        raise DenoiselabError(f"{run.run_dir} is a noise-aware classifier: it cannot be sampled; use it to guide "
                              f"a run with `denoiselab sample RUN --classifier {run.run_dir} --class K`")
    if run.denoiser is None:
        raise DenoiselabError(f"{run.run_dir} is a single-step denoiser (diffusion kind denoise): it cannot be "
                              "sampled; its pictures are denoiser_sigmas.png in the run directory")


def reverse_frames(run: LoadedRun, *, sampler: Optional[str] = None, steps: Optional[int] = None, seed: int, num: int,
                   frames: int, opts: Optional[dict] = None, denoiser=None, cond=None,
                   plan: Optional["SamplingPlan"] = None):
    """Run a sampler and keep about ``frames`` evenly spaced (t, x_t, x0_hat) snapshots plus the result.
    ``denoiser`` (e.g. a guided one) and ``cond`` replace the run's own unconditional denoiser.
    ``plan`` (or sampler/steps/opts, completed by sampling_plan) says how to sample."""
    from .samplers.api import generate

    require_sampler(run)
    plan = plan or sampling_plan(run, sampler=sampler, steps=steps, opts=opts)
    keep_every = max(1, plan.steps // frames)
    shots: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def callback(d):
        if d["i"] % keep_every == 0:
            shots.append((d["t"], d["x"].to("cpu", copy=True), d["x0_hat"].to("cpu", copy=True)))

    x, _ = generate(denoiser or run.denoiser, num, run.sample_shape, seed=seed, cond=cond, callback=callback,
                    progress=True, **plan.kwargs())
    shots.append((-1, x, x))
    return shots


def reverse_gif(run: LoadedRun, path: Path, *, sampler: Optional[str] = None, steps: Optional[int] = None,
                seed: int = 0, num: int = 1024, frames: int = 50, opts: dict | None = None, data: torch.Tensor | None = None,
                denoiser=None, cond=None, nrow: int | None = None, plan: Optional["SamplingPlan"] = None) -> Path:
    """GIF of the reverse process; sampled as ``plan`` says (default: the run's own sampling_plan)."""
    from .viz.plots import gif_reverse_points

    shots = reverse_frames(run, sampler=sampler, steps=steps, seed=seed, num=num, frames=frames, opts=opts,
                           denoiser=denoiser, cond=cond, plan=plan)
    if run.kind == "points":
        if data is None:
            data = build_dataset(run.config.data.name, run.config.data.options, 2048, 1).x
        return gif_reverse_points([s[1] for s in shots], [max(s[0], 0) for s in shots], path, data=data)
    from .viz.images import gif_reverse_images

    # A class-conditional GIF shows every sample, one class per column; others the first 16.
    return gif_reverse_images(shots, path, **({"num": num, "nrow": nrow} if nrow else {}))


def run_pictures(out: Path, data: TensorData, device=None) -> list[Path]:
    """The pictures every run directory gets after training, drawn on ``device``."""
    from .samplers.api import generate
    from .viz import plots

    out = Path(out)
    written = [plots.plot_loss(out / "metrics.jsonl", out / "loss.png")]
    if load_run(out, device=device).config.diffusion.kind == "classifier":
        from .conditioning import classifier_pictures

        return written + classifier_pictures(out, data)
    if data.kind == "images":
        return written + image_pictures(out, data, device=device)
    run = load_run(out, device=device)
    if run.kind == "points":
        ref = data.x[:2048]
        if run.denoiser.schedule is not None:  # flows have no beta schedule to plot
            written.append(plots.plot_forward_points(ref, run.denoiser.schedule, out / "forward.png"))
        plan = sampling_plan(run)  # the preset's own sampler, steps and grid
        x, _ = generate(run.denoiser, 2048, (2,), seed=0, **plan.kwargs())
        written.append(plots.plot_samples_over_data(x, ref, out / "samples.png",
                                                    title=f"{plan.sampler}, {plan.steps} steps ({plan.grid} grid)"))
        written.append(reverse_gif(run, out / "reverse.gif", data=ref, plan=plan))
    return written


def image_pictures(out: Path, data: TensorData, num: int = 64, seed: int = 0, device=None) -> list[Path]:
    """Image runs: the first training batch (dataset_summary.png), sample grid (the preset's sampler),
    reverse-process GIF, forward-process grid
    and GIF of a few training images, pixel histograms at t = T, schedules compared on one image;
    the histogram and schedule numbers go to ``pictures.json``. Single-step denoisers get their
    sigma sweep instead."""
    from .samplers.api import generate
    from .training.checkpoint import atomic_write
    from .viz import images as V

    out = Path(out)
    run = load_run(out, device=device)
    cfg = run.config
    g = torch.Generator().manual_seed(seed)
    pick = data.x[torch.randperm(len(data), generator=g)[:16]]
    numbers: dict = {}
    # The first training batch exactly as the trainer draws it (flips included): what the model learns from.
    value_range = (0.0, 1.0) if data.x.min() >= 0 else (-1.0, 1.0)
    summary = V.save_grid(data.batch(0, 64, cfg.train.seed)[0], out / "dataset_summary.png", nrow=8,
                          value_range=value_range)
    if cfg.diffusion.kind == "denoise":
        dev = module_device(run.net)
        path, mse = V.plot_denoiser_sigmas(pick[:6], lambda z: run.net(z.to(dev), None, None).cpu(),
                                           out / "denoiser_sigmas.png",
                                           value_range=value_range)
        numbers["denoiser_mse_by_sigma"] = mse
        written = [summary, path]
    else:
        # The preset's own sampler, steps and grid for the samples and the GIF alike.
        plan = sampling_plan(run)
        s = cfg.sample
        from .conditioning import guided_run, is_text, num_classes

        k = num_classes(run)
        if is_text(run):
            # Text runs: "a <colour> <digit>" for every colour (rows) and digit (columns).
            from .data.captioned import COLOURS, DIGIT_WORDS, caption

            prompts = [caption("a {c} {w}", d, c) for c in COLOURS for d in range(len(DIGIT_WORDS))]
            den, cond = guided_run(run, len(prompts), prompts=prompts)
            x, nfe = generate(den, len(prompts), run.sample_shape, seed=seed, cond=cond, progress=True,
                              **plan.kwargs())
            written = [summary, V.save_grid(x, out / "samples.png", nrow=len(DIGIT_WORDS))]
            numbers["samples"] = plan.record(nfe, len(prompts), guidance=s.guidance,
                                             prompts="a <colour> <digit>: colours by row, digits by column")
            den, cond = guided_run(run, 10, prompts=prompts[:10])
            written.append(reverse_gif(run, out / "reverse.gif", num=10, frames=25, denoiser=den, cond=cond,
                                       nrow=10, plan=plan))
        elif k:
            # The CS180 picture: 4 samples of each class, one class per column; and guided sampling as a GIF.
            den, cond = guided_run(run, 4 * k)
            x, nfe = generate(den, 4 * k, run.sample_shape, seed=seed, cond=cond, progress=True,
                              **plan.kwargs())
            written = [summary, V.save_grid(x, out / "samples.png", nrow=k)]
            numbers["samples"] = plan.record(nfe, 4 * k, guidance=s.guidance, classes="one per column")
            den, cond = guided_run(run, 2 * k)
            written.append(reverse_gif(run, out / "reverse.gif", num=2 * k, frames=25, denoiser=den, cond=cond,
                                       nrow=k, plan=plan))
        else:
            x, nfe = generate(run.denoiser, num, run.sample_shape, seed=seed, progress=True, **plan.kwargs())
            written = [summary, V.save_grid(x, out / "samples.png")]
            numbers["samples"] = plan.record(nfe, num)
            written.append(reverse_gif(run, out / "reverse.gif", num=16, frames=25, plan=plan))
        schedule = run.denoiser.schedule
        if schedule is None:  # flows have no beta schedule: no forward-process pictures
            atomic_write(out / "pictures.json", lambda tmp: Path(tmp).write_text(json.dumps(numbers, indent=2)))
            return written
        written.append(V.plot_forward_grid(pick[:6], schedule, out / "forward.png"))
        written.append(V.gif_forward_images(pick, schedule, out / "forward.gif"))
        path, numbers["pixel_histograms"] = V.plot_pixel_histograms(data.x[:1000], schedule, out / "histograms.png")
        written.append(path)
        path, numbers["schedule_survival"] = V.plot_schedule_images(pick[:1], out / "schedule_images.png", T=schedule.T,
                                                                    batch=data.x[:256])
        written.append(path)
    atomic_write(out / "pictures.json", lambda tmp: Path(tmp).write_text(json.dumps(numbers, indent=2)))
    return written
