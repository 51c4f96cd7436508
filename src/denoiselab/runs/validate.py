"""Check a run's config against what the package offers: one error naming the bad key and the allowed values.
"""

from __future__ import annotations

import math

from ..config import RANGES, RunConfig
from ..errors import DenoiselabError


def _choices() -> dict[str, tuple[str, ...]]:
    from ..data import DATASETS
    from ..denoiser import C_OUTS, PARAMETERIZATIONS
    from ..device import AUTOCAST_MODES
    from ..models import MODELS
    from ..samplers import GRIDS, SAMPLERS, SPACINGS
    from ..samplers.consistency import SOLVERS
    from ..schedules import SCHEDULES

    return {
        "data.name": tuple(DATASETS),
        "model.name": tuple(MODELS),
        "diffusion.kind": ("vp", "flow", "denoise", "classifier", "autoencoder"),
        "diffusion.schedule": (*SCHEDULES, "custom"),
        "diffusion.parameterization": PARAMETERIZATIONS,
        "diffusion.t_sampling": ("uniform", "lognormal", "range"),
        "train.optimizer": ("adam", "adamw"),
        "train.lr_schedule": ("constant", "cosine", "exponential"),
        "train.autocast": AUTOCAST_MODES,
        "sample.sampler": tuple(SAMPLERS),
        "sample.spacing": tuple(SPACINGS),
        "sample.grid": ("", *(g for g in GRIDS if g != "levels")),  # a levels grid needs its levels: --sigmas
        "sample.precision": AUTOCAST_MODES,
        "distill.method": ("", "cd", "ct", "reflow"),
        "distill.solver": SOLVERS,
        "distill.c_out": C_OUTS,
    }


def _interval(lo, hi, lo_in, hi_in) -> str:
    if hi == math.inf:
        return f"{'>=' if lo_in else '>'} {lo:g}"
    return f"inside {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def validate_config(cfg: "RunConfig") -> "RunConfig":
    """Check every setting with a fixed set of values or a range; the error names the key and
    what it may be. Returns cfg, so it can wrap a constructor."""
    for key, allowed in _choices().items():
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        if v not in allowed:
            what = {"data.name": "data set", "model.name": "model", "sample.sampler": "sampler"}.get(key, "value")
            raise DenoiselabError(f"setting {key}: unknown {what} {v!r}, use one of {', '.join(allowed)}")
    for key, (lo, hi, lo_in, hi_in) in RANGES.items():
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and (v > lo or (lo_in and v == lo)) and (v < hi or (hi_in and v == hi)))
        if not ok:
            raise DenoiselabError(f"setting {key} = {v!r} is out of range: it must be {_interval(lo, hi, lo_in, hi_in)}")
    d = cfg.diffusion
    if d.kind == "vp" and d.t_sampling == "range":  # checked before a run directory is made
        if d.t_sigma_min >= d.t_sigma_max:
            raise DenoiselabError(f"settings diffusion.t_sigma_min = {d.t_sigma_min:g} and t_sigma_max = "
                                  f"{d.t_sigma_max:g}: the training noise range is empty, make t_sigma_min the smaller")
        from ..process import steps_in_range
        from .build import build_schedule
        steps_in_range(build_schedule(d), d.t_sigma_min, d.t_sigma_max)
    b = cfg.train.adam_betas
    if len(b) != 2 or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in b):
        raise DenoiselabError(f"setting train.adam_betas = {list(b)!r} is not allowed: use two numbers in [0, 1), "
                              "e.g. 0.9,0.999")
    return cfg
