"""Quality against NFE for every sampler and time grid on one trained run: the table and the plot
behind ``denoiselab benchmark-samplers RUN_DIR`` and ``benchmarks/samplers.py``.

2D runs are scored by chamfer distance (KAIST grading) of ``num`` samples against ``num`` fresh
points of the data set (seed 10_000 + sampling seed), averaged over the sampling seeds; image
runs by FID in the domain feature space of ``evaluation.images`` against the held-out half of
the reference. A "tuned" grid is a continuous grid with narrowed sigma ends, passed as
``name:sigma_min:sigma_max`` (e.g. ``logsnr:0.08:10``).
"""

from __future__ import annotations

import inspect
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..errors import DenoiselabError
from ..samplers import SAMPLERS, get_sampler
from ..samplers.api import generate

SWEEP_SAMPLERS = ("ddim", "euler", "heun", "euler-ancestral", "dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde", "dpmpp-3m-sde")


SWEEP_GRIDS = ("uniform", "quadratic", "karras", "logsnr", "leading", "logsnr:0.08:10", "karras:0.04:10")


SWEEP_NFES = (5, 10, 20, 50)


@dataclass
class Row:
    sampler: str
    grid: str
    budget: int       # the NFE asked for; Heun spends the odd number 2 N - 1 below it
    steps: int
    nfe: int
    scores: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return statistics.mean(self.scores)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


def parse_grid(spec: str) -> tuple[str, dict]:
    """``logsnr`` -> ("logsnr", {}); ``logsnr:0.08:10`` -> ("logsnr", {sigma_min: 0.08, sigma_max: 10})."""
    name, *ends = spec.split(":")
    if not ends:
        return name, {}
    if len(ends) != 2:
        raise DenoiselabError(f"grid {spec!r}: write NAME or NAME:SIGMA_MIN:SIGMA_MAX")
    try:
        return name, {"sigma_min": float(ends[0]), "sigma_max": float(ends[1])}
    except ValueError:
        raise DenoiselabError(f"grid {spec!r}: the sigma ends must be numbers") from None


def parse_sampler(spec: str) -> tuple[str, dict]:
    """``dpmpp-2m-sde`` -> ("dpmpp-2m-sde", {}); ``dpmpp-2m-sde:eta=2`` -> (..., {"eta": 2.0})."""
    name, *pairs = spec.split(":")
    get_sampler(name)  # an unknown name: one line listing the samplers
    opts = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        try:
            if not eq:
                raise ValueError
            opts[key.replace("-", "_")] = float(value)
        except ValueError:
            raise DenoiselabError(f"sampler {spec!r}: write NAME or NAME:KEY=NUMBER[:KEY=NUMBER], "
                                  "e.g. dpmpp-2m-sde:eta=2") from None
    known = [p for p in inspect.signature(SAMPLERS[name]).parameters
             if p not in ("denoiser", "x_T", "timesteps", "noise", "cond", "callback")]
    for key in opts:
        if key not in known:
            raise DenoiselabError(f"sampler {spec!r}: {name} has no option {key!r}; "
                                  f"it takes {', '.join(known) or 'none'}")
    return name, opts


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """Solver steps that spend at most ``nfe`` evaluations (Heun: 2 N - 1)."""
    return max(1, (nfe + 1) // 2) if sampler == "heun" else nfe


def points_scorer(data_name: str, num: int) -> Callable[[torch.Tensor, int], float]:
    from ..data import load_toy
    from ..evaluation import chamfer_distance

    def score(x: torch.Tensor, seed: int) -> float:
        return chamfer_distance(x, load_toy(data_name, num, 10_000 + seed))

    return score


def image_scorer(run, cache_dir: Path, log=None) -> Callable[[torch.Tensor, int], float]:
    """FID in the domain feature space against the held-out half of the run's own data set."""
    from .. import runs
    from ..evaluation.frechet import frechet_distance_features
    from ..evaluation.images import domain_extractor, extract, reference_features, reference_halves

    c = run.config
    data = runs.open_dataset(c.data.name, c.data.options, c.data.num, c.train.seed)  # images, a latent run's too
    ext = domain_extractor(data, cache_dir, log=log)
    ref = reference_features(ext, data, cache_dir, log=log)
    _, half_b = reference_halves(len(ref))
    ref_b = ref[half_b]

    def score(x: torch.Tensor, seed: int) -> float:
        return frechet_distance_features(extract(ext, x), ref_b)

    return score


def run_benchmark(run, *, samplers: Sequence[str] = SWEEP_SAMPLERS, grids: Sequence[str] = SWEEP_GRIDS,
                  nfes: Sequence[int] = SWEEP_NFES, seeds: Sequence[int] = (0, 1, 2), num: int = 2048,
                  scorer: Optional[Callable[[torch.Tensor, int], float]] = None, batch_size: int = 0,
                  log: Optional[Callable[[str], None]] = None, start: str = "auto") -> list[Row]:
    """Score every (sampler, grid, NFE); pairs a model cannot run (a DDPM spacing on a flow, the
    ddpm sampler on a flow) are skipped. ``start`` as ``runs.start_moments``: by default the
    deterministic samplers start from the data's moments, as ``sample`` does."""
    from .plan import start_moments

    parsed = {spec: parse_sampler(spec) for spec in samplers}
    if scorer is None:
        if run.kind != "points":
            raise DenoiselabError("image runs need a scorer: pass one built by image_scorer")
        scorer = points_scorer(run.config.data.name, num)
    rows: list[Row] = []
    for nfe_target in nfes:
        for sampler_spec in samplers:
            sampler, sampler_opts = parsed[sampler_spec]
            for spec in grids:
                grid, opts = parse_grid(spec)
                steps = steps_for_nfe(sampler, nfe_target)
                scores, t0, nfe = [], time.perf_counter(), 0
                try:
                    for seed in seeds:
                        x, nfe = generate(run.denoiser, num, run.sample_shape, sampler=sampler, steps=steps, seed=seed,
                                          grid=grid, grid_opts=opts, batch_size=batch_size, progress=True,
                                          start=start_moments(run, start, sampler, sampler_opts), **sampler_opts)
                        x = run.decode(x)
                        scores.append(scorer(x, seed) if torch.isfinite(x).all() else float("inf"))
                except DenoiselabError as e:
                    if log:
                        log(f"skip {sampler_spec} on {spec}: {e}")
                    continue
                rows.append(Row(sampler_spec, spec, nfe_target, steps, nfe, scores, time.perf_counter() - t0))
                if log:
                    r = rows[-1]
                    log(f"{sampler_spec:16s} {spec:16s} steps {steps:4d} NFE {nfe:4d}  {r.mean:10.3f} +- {r.sd:.3f}")
    return rows


def format_table(rows: Sequence[Row], metric: str) -> str:
    lines = [f"| sampler | grid | steps | NFE | {metric} (mean +- sd) | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r.budget, r.mean)):
        lines.append(f"| {r.sampler} | {r.grid} | {r.steps} | {r.nfe} | {r.mean:.3f} +- {r.sd:.3f} | {r.seconds:.1f} |")
    return "\n".join(lines)


def best_by_nfe(rows: Sequence[Row]) -> dict[int, Row]:
    """The best row within each NFE budget."""
    best: dict[int, Row] = {}
    for r in rows:
        if r.budget not in best or r.mean < best[r.budget].mean:
            best[r.budget] = r
    return best


def plot(rows: Sequence[Row], path: Path, metric: str, title: str = "",
         references: Optional[dict[str, float]] = None) -> Path:
    """Quality against NFE, one panel per grid, one line per sampler (log-log; ddim lies under
    euler, which is the same update). ``references`` draws labelled horizontal lines, e.g. the
    1000-step DDPM score the few-step samplers are measured against."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    from ..io import atomic_write
    from ..viz.common import plt

    grids = list(dict.fromkeys(r.grid for r in rows))
    samplers = list(dict.fromkeys(r.sampler for r in rows))
    cols = min(4, len(grids))
    nrows = (len(grids) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False, sharey=True)
    finite = [r.mean for r in rows if r.mean < float("inf")] + list((references or {}).values())
    for ax, g in zip(axes.flat, grids):
        for s in samplers:
            pts = sorted((r.nfe, r.mean) for r in rows if r.grid == g and r.sampler == s and r.mean < float("inf"))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=s)
        ax.set_xscale("log")
        ax.set_yscale("log")
        budgets = sorted({r.budget for r in rows})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        # Readable numbers on the log axis: ticks at 1, 2 and 5 per decade, printed plainly.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        if finite:
            ax.set_ylim(min(finite) * 0.7, min(max(finite), 1e4) * 1.5)
        for label, value in (references or {}).items():
            ax.axhline(value, color="0.3", linestyle="--", linewidth=1, label=label)
        ax.set_title(f"grid {g}")
        ax.set_xlabel("NFE")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(grids):]:
        ax.axis("off")
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
