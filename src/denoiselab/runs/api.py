"""The package's own face for Python users: ``denoiselab.train`` and ``denoiselab.load`` return a
:class:`Run` that samples, saves pictures and evaluates, the way ``denoiselab sample`` and
``denoiselab train`` do on the command line (the same defaults, the same seeds, the same bits)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..errors import DenoiselabError
from ..samplers.api import generate
from .conditions import guided_run
from .fit import fit_run
from .load import LoadedRun, load_run
from .plan import sampling_plan
from .resume import resolve_train_config


class Run:
    """A trained run. ``loaded`` (``runs.LoadedRun``) holds its config, network and denoiser."""

    def __init__(self, loaded: LoadedRun):
        self.loaded = loaded

    @property
    def path(self) -> Path:
        return Path(self.loaded.run_dir)

    @property
    def config(self):
        return self.loaded.config

    @property
    def denoiser(self):
        return self.loaded.denoiser

    @property
    def kind(self) -> str:
        """"points" (2D data) or "images"."""
        return self.loaded.kind

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.config.preset}, {self.kind}, step {self.loaded.step})"

    def sample(self, num: int, *, seed: int = 0, sampler: Optional[str] = None, steps: Optional[int] = None,
               cls: Optional[int] = None, guidance: Optional[float] = None,
               prompt: Union[None, str, Sequence[str]] = None, progress: bool = False) -> torch.Tensor:
        """``num`` samples in the data's frame (2D points, or images in [-1, 1] NCHW), drawn as
        `denoiselab sample` draws them: the run's stored sampler, steps and grid unless named;
        sample i depends only on (seed, i). ``cls``/``guidance`` for class-conditional runs,
        ``prompt`` for text runs (sample i gets prompt i mod P)."""
        if num < 1:
            raise DenoiselabError(f"num = {num}: ask for at least one sample")
        plan = sampling_plan(self.loaded, sampler=sampler, steps=steps)
        prompts = [prompt] if isinstance(prompt, str) else prompt
        denoiser, cond = guided_run(self.loaded, num, cls=cls, guidance=guidance, prompts=prompts)
        x, _ = generate(denoiser, num, self.loaded.sample_shape, seed=seed, cond=cond, progress=progress,
                        **plan.kwargs())
        return self.loaded.decode(x)

    def save_grid(self, x: torch.Tensor, path: Union[str, Path]) -> Path:
        """A picture of samples: images as a grid, 2D points as a scatter plot over the data."""
        from ..viz.images import save_grid
        from ..viz.plots import plot_samples_over_data

        path = Path(path)
        if self.kind == "points":
            return plot_samples_over_data(x, None, path, title=f"{len(x)} samples")
        return save_grid(x, path)


def load(path: Union[str, Path], device=None) -> Run:
    """A trained run from its folder (the EMA weights, as `denoiselab sample` uses them)."""
    return Run(load_run(Path(path), device=device))


def train(preset: str = "swiss-roll", out: Union[str, Path] = "runs/run", *, resume: bool = False,
          pictures: bool = True, progress: bool = True, **overrides) -> Run:
    """Train ``preset`` (a name from `denoiselab presets`, or a TOML file) into ``out``, as
    `denoiselab train --preset PRESET --out OUT --set key=value ...` does; ``overrides`` are those
    settings (``steps=300``, ``lr=1e-3``, ``seed=1``, ``train.ema_decay=0.99`` as
    ``**{"train.ema_decay": 0.99}``). With ``resume`` an existing run continues."""
    out = Path(out)
    sets = [f"{k}={v}" for k, v in overrides.items()]
    cfg = resolve_train_config(out, preset, sets, resume)
    if not resume and (out / "config.json").exists():
        raise DenoiselabError(f"{out} already holds a run: pass resume=True to continue it, or choose another out")
    fit_run(cfg, out, resume=resume, progress=progress, pictures=pictures)
    return load(out)
