"""The sampling plan: how a run is sampled when a command leaves something out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import DenoiselabError
from ..samplers import get_sampler
from .load import LoadedRun, require_sampler

if TYPE_CHECKING:
    from ..samplers.start import DataMoments

# A student's measured best noise levels per step count (``runs.distill.measure_levels``), in a
# file beside its checkpoints: measured after training, so no checkpoint is rewritten for them.
LEVELS = "levels.json"


def measured_levels(run_dir) -> tuple[dict[int, list[float]], Optional[int]]:
    """({steps: [sigma, ...] highest first}, the best step count) stored with a run; ({}, None) if
    it has none."""
    path = Path(run_dir) / LEVELS
    if not path.is_file():
        return {}, None
    try:
        d = json.loads(path.read_text())
        levels = {int(k): [float(x) for x in v] for k, v in d["levels"].items()}
        best = int(d["steps"]) if d.get("steps") else None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DenoiselabError(f"{path} is not a levels file: delete it to sample on the default grid") from None
    return levels, best


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
        if self.grid == "levels":
            where = "at noise levels " + ", ".join(f"{x:.3g}" for x in self.grid_opts.get("sigmas", ()))
        else:
            where = f"on the {self.grid} grid"
        return f"{self.sampler}{eta}, {self.steps} steps {where}{bf}"

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
    - steps: the stored steps if the sampler is the stored one (a student's measured best step
      count where it has one, ``measured_levels``), else the sampler's default
      (``samplers.default_steps``);
    - grid: a student's measured levels for these steps (``measured_levels``), else the stored grid
      for the stored sampler, else the sampler's default
      (``grids.default_grid``); a karras or logsnr grid spans the data's noise range
      (``LoadedRun.data_sigma_range``, clamped into the model's) unless given ends;
    - eta: the stored one for the stored sampler, if set, and likewise eta_low below eta_switch;
    - precision: the stored ``config.sample.precision`` (the network's autocast while sampling);
    - start: ``auto`` (``SamplingPlan.start_moments``: deterministic samplers start from the
      noised data's mean and covariance, stochastic ones from N(0, I)), ``moments`` or ``gaussian``.
    """
    from ..samplers import default_steps, takes_option
    from ..samplers.grids import SIGMA_GRIDS, clamp_sigma_range, default_grid

    require_sampler(run)
    s = run.config.sample
    own = sampler is None or sampler == s.sampler
    sampler = sampler or s.sampler
    get_sampler(sampler)  # an unknown name: one line listing the samplers
    searched = own and not grid and not grid_opts and run.config.distill.method and run.run_dir is not None
    measured, best = measured_levels(run.run_dir) if searched else ({}, None)
    steps = steps or ((best or s.steps) if own else default_steps(sampler, run.denoiser))
    grid = grid or (s.grid if own and s.grid else default_grid(sampler, run.denoiser))
    grid_opts = dict(grid_opts or {})
    if int(steps) in measured:
        grid, grid_opts = "levels", {"sigmas": measured[int(steps)]}
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
    ``moments`` always, ``gaussian`` never, ``auto`` for samplers that carry a mismatched start to
    their samples (``samplers.carries_start``: ODE solvers and consistency sampling) where other
    stochastic ones forget it (docs/results/samplers.md, "MNIST: where sampling starts";
    docs/results/distill.md). Diffusion and flow runs have moments; a run trained before
    they were stored fits them from its data set on first use."""
    from ..samplers import carries_start

    if _check_start(start) == "gaussian" or run.config.diffusion.kind not in ("vp", "flow"):
        return None
    if start == "auto" and not carries_start(sampler, opts):
        return None
    moments = run.data_moments()
    if moments is None and start == "moments":
        raise DenoiselabError(f"{run.run_dir} has no data moments and its data set cannot be read here: "
                              "use --start gaussian (or auto)")
    return moments
