"""What every command shares: the logger, writing samples, the sampling flags and the sampling plan from them."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..errors import DenoiselabError


def save_array(path: Path, x: torch.Tensor, kind: str) -> None:
    from ..io import atomic_save_npy

    path = Path(path)
    if path.suffix == ".npy":
        atomic_save_npy(path, x.float().numpy().astype(np.float32))
    elif path.suffix == ".png":
        if kind == "points":
            from ..viz.plots import plot_samples_over_data

            plot_samples_over_data(x, None, path, title=f"{len(x)} samples")
        else:
            from ..viz.images import save_grid

            save_grid(x, path)
    else:
        raise DenoiselabError(f"unknown output type {path.suffix!r} for {path}: use .npy or .png")


def sampler_opts(args) -> dict:
    from ..samplers import SAMPLERS, takes_option

    opts = {}
    for option in ("eta", "eta_low", "eta_switch"):
        if args.sampler in SAMPLERS and takes_option(args.sampler, option) and getattr(args, option, None) is not None:
            opts[option] = getattr(args, option)
    if args.sampler == "ddpm" and args.variance:
        opts["variance"] = args.variance
    if args.sampler in ("euler", "heun") and args.churn:
        opts["s_churn"] = args.churn
    return opts


def grid_opts(args) -> dict:
    """--sigma-min/--sigma-max/--rho, or --sigmas; a grid that takes none of them says so (grids.time_grid)."""
    opts = {k: getattr(args, k) for k in ("sigma_min", "sigma_max", "rho") if getattr(args, k, None) is not None}
    if getattr(args, "sigmas", None):
        opts["sigmas"] = list(args.sigmas)
    return opts


def levels_args(args) -> None:
    """--sigmas names the levels grid and, unless --steps is given, the step count (one per level)."""
    if getattr(args, "sigmas", None):
        args.grid = args.grid or "levels"
        args.steps = args.steps or len(args.sigmas)


def plan_from_args(run, args):
    """What the command line leaves out comes from the run (pipeline.sampling_plan); the
    resolved sampler, steps and grid are written back into args for the log and the metrics."""
    from ..runs import sampling_plan

    levels_args(args)
    plan = sampling_plan(run, sampler=args.sampler, steps=args.steps or None, grid=args.grid or args.spacing,
                         grid_opts=grid_opts(args), start=getattr(args, "start", None))
    args.sampler, args.steps, args.grid = plan.sampler, plan.steps, plan.grid
    plan.opts.update(sampler_opts(args))
    if getattr(args, "precision", None):
        plan.precision = args.precision
    return plan


class GivenStart:
    """x_T handed in by the user (``sample --noise FILE.npy``, as diffusers pipelines take
    ``latents=``), in place of the drawn one, batch after batch; a stochastic sampler's later
    noise still comes from --seed. Used as ``generate``'s ``start``."""

    def __init__(self, x_T: torch.Tensor):
        self.x_T, self.next = x_T, 0

    def draw(self, z: torch.Tensor, a: float, s: float) -> torch.Tensor:
        rows = self.x_T[self.next : self.next + len(z)]
        self.next += len(z)
        return rows.to(z.dtype)


def read_noise(path, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """--noise FILE.npy: x_T of shape (N, *sample_shape), read by the one .npy reader."""
    from ..io import load_npy

    a = load_npy(path, "--noise", ndims=(len(sample_shape) + 1,))
    if tuple(a.shape[1:]) != tuple(sample_shape):
        raise DenoiselabError(f"--noise {path} has shape {a.shape}: this run starts from x_T of shape "
                              f"(N, {', '.join(map(str, sample_shape))})")
    return torch.from_numpy(a.astype(np.float32))


def draw(run, args, num: int, callback=None, start=None):
    """Sample ``num`` images or points of ``run`` as the flags ask; ``start`` (a ``GivenStart``)
    replaces the drawn x_T."""
    from ..samplers.api import generate

    plan = plan_from_args(run, args)

    from ..device import module_device, sampling_batch_size
    from .guidance import conditioning

    kind, shape = run.kind, run.sample_shape
    denoiser, cond = conditioning(run, args, num)
    batch_size = args.batch_size or sampling_batch_size(kind, module_device(denoiser))
    kwargs = plan.kwargs()
    if start is not None:
        kwargs["start"] = start
    x, nfe = generate(denoiser, num, shape, seed=args.seed, cond=cond, callback=callback, batch_size=batch_size,
                      progress=True, **kwargs)
    return run.decode(x), nfe, kind, plan


# Float options of `add_sampling` whose default (None) means: the run's stored value, else the sampler's own.
OPTIONAL_FLOATS = {
    "--sigma-min": "karras/logsnr grids: smallest sigma before the final denoising step; logsnr-trailing: where a "
                   "further step would land (default: the data's resolution: one pixel level for images, the "
                   "nearest-neighbour spacing of 2D points)",
    "--sigma-max": "karras/logsnr grids: largest sigma, where sampling starts (default: the largest distance between "
                   "two training samples, Song & Ermon 2020; both ends stored with the run)",
    "--rho": "karras grid: the spacing exponent (default 7)",
    "--eta": "ddim: stochasticity (default 0; 1 = DDPM posterior); euler-ancestral, dpmpp-2m-sde, dpmpp-3m-sde: how "
             "much noise each step re-injects (default 1; 0 = the ODE; the dpmpp SDE solvers take any eta >= 0)",
    "--eta-low": "dpmpp-2m-sde, dpmpp-3m-sde: the eta of the steps that start at or below --eta-switch (default: the "
                 "run's stored one, else 0)",
}


def add_sampling(p: argparse.ArgumentParser, steps: int | None = None, sampler: str | None = None,
                 default_text: str | None = None) -> None:
    """Every flag of a command that samples a run (sample, evaluate, animate, edit); ``default_text``
    says what --sampler and --steps default to where the command decides it."""
    from .guidance import add_sampling_options

    add_solver(p, steps, sampler, default_text)
    add_grid(p)
    add_start(p)
    add_execution(p)
    add_device(p)
    add_sampling_options(p)


def add_solver(p: argparse.ArgumentParser, steps: int | None = None, sampler: str | None = None,
               default_text: str | None = None) -> None:
    """--sampler, --steps, --seed: which solver, how many steps, which noise."""
    from ..samplers import DEFAULT_STEPS, SAMPLERS

    own = default_text or ("the run's own (its preset's measured best, config.sample)" if sampler is None else sampler)
    p.add_argument("--sampler", default=sampler, choices=list(SAMPLERS), metavar="NAME",
                   help=f"sampler: {', '.join(SAMPLERS)}; default: {own}")
    named = ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
    usual = (f"the run's stored steps for its own sampler; another --sampler takes its usual count (ddpm the "
             f"model's T, {named})" if steps is None else str(steps))
    usual = default_text or usual
    p.add_argument("--steps", type=int, default=steps, help=f"solver steps (the output reports the NFE); default: {usual}")
    p.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i) (default 0)")


def add_grid(p: argparse.ArgumentParser) -> None:
    """The time grid, its ends and the noise each step re-injects."""
    from ..samplers import GRIDS, SPACINGS

    p.add_argument("--grid", default=None, choices=list(GRIDS), metavar="GRID",
                   help="time grid: uniform, quadratic, karras (rho 7), logsnr, logsnr-trailing (logsnr whose last "
                        "step strides to clean data), levels (given by --sigmas), or a DDPM spacing (leading, trailing, "
                        "linspace); default: a consistency student's measured levels for the step count, else the "
                        "run's stored grid for its own sampler, else leading for ddpm/ddim, logsnr-trailing for the "
                        "other solvers, quadratic for flows")
    p.add_argument("--spacing", default=None, choices=SPACINGS, help="older name of --grid for the DDPM spacings")
    p.add_argument("--sigmas", nargs="+", type=float, default=None, metavar="SIGMA",
                   help="sample at these noise levels, highest first, one per step (the levels grid; a consistency "
                        "student's default: its measured best levels for the step count, where it has them)")
    for flag, text in OPTIONAL_FLOATS.items():
        p.add_argument(flag, type=float, default=None, help=text)
    p.add_argument("--eta-switch", type=float, default=None, metavar="SIGMA",
                   help="dpmpp-2m-sde, dpmpp-3m-sde: the noise level at and below which steps use --eta-low "
                        "(0 = --eta everywhere; default: the run's stored one, else 0; mnist at 10 steps: "
                        "--eta-low 8 --eta-switch 3)")


def add_execution(p: argparse.ArgumentParser) -> None:
    """How each step runs: churn, the DDPM variance, the batch and the precision."""
    from ..device import AUTOCAST_MODES

    p.add_argument("--churn", type=float, default=0.0,
                   help="euler/heun: S_churn of Karras et al. 2022 (0 = deterministic)")
    p.add_argument("--variance", choices=["beta_tilde", "beta", "learned_range"], default=None,
                   help="ddpm: the variance of each reverse step: beta_tilde (the true posterior's, default) or "
                        "beta (its upper bound; Ho et al. 2020, sec. 3.2); learned_range (the default of a network "
                        "that predicts it, such as DeepFloyd IF: Nichol & Dhariwal 2021, eq. 15)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per forward pass (memory and speed only; default 256 images on a CPU, else 4096)")
    p.add_argument("--precision", default=None, choices=AUTOCAST_MODES,
                   help="the network's autocast while sampling (the solver stays float32): none, bf16, auto (bf16 "
                        "on a CUDA GPU), fp16 (CUDA only); default: the run's stored one (mnist: bf16, else none)")


def add_start(p: argparse.ArgumentParser) -> None:
    from ..runs import START_MODES

    p.add_argument(
        "--start",
        default="auto",
        choices=START_MODES,
        help="where sampling starts: moments (the Gaussian with the noised data's mean and covariance at "
        "the grid's first point, stored with the run), gaussian (N(0, I)), or auto (default): "
        "moments for deterministic samplers (ODE solvers carry a mismatched start to their samples), "
        "gaussian for stochastic ones",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    from ..device import DEVICE_HELP

    if not any("--device" in a.option_strings for a in p._actions):
        p.add_argument("--device", default="auto", help=DEVICE_HELP)


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    # A warning (a skipped unreadable image, ...) is one line on stderr, like an error.
    return f"denoiselab: warning: {message}\n"


def plural(n: int, noun: str) -> str:
    """A count with its noun: 1 image, 2 images (for nouns whose plural adds an s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
