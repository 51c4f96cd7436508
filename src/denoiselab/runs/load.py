"""Load a trained run: its config, its newest whole checkpoint, its network and denoiser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from ..config import RunConfig
from ..denoiser import Denoiser
from ..device import place
from ..errors import DenoiselabError
from ..io import log
from ..training.checkpoint import load_latest
from .build import build_denoiser, build_net, fit_data_moments, open_dataset

if TYPE_CHECKING:
    from ..samplers.start import DataMoments
    from .latent import LatentCodec


CONFIG = "config.json"


@dataclass
class LoadedRun:
    config: RunConfig
    net: torch.nn.Module
    denoiser: Denoiser
    step: int
    run_dir: Path
    info: dict
    moments: Optional["DataMoments"] = None  # the data's, stored at training (None: fitted on demand)
    codec: Optional["LatentCodec"] = None  # a latent run's autoencoder (``runs.latent``); None: pixels

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of what the run makes: its samples' shape, or a latent run's decoded images'."""
        return self.codec.image_shape if self.codec is not None else self.sample_shape

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Samples -> what users see: a latent run's latents decoded to images; others unchanged."""
        return x if self.codec is None else self.codec.decode(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the space the run samples in (a latent run's latents; others unchanged)."""
        return x if self.codec is None else self.codec.encode(x)

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
            from ..samplers.grids import fit_sigma_range

            try:
                cfg = self.config
                data = open_dataset(cfg.data.name, cfg.data.options, min(cfg.data.num, 100_000), cfg.train.seed)
                self._fitted = fit_sigma_range(data.x, data.kind)
            except DenoiselabError as e:
                log(f"warning: cannot read {self.config.data.name!r} to fit the grid's noise range ({e}); "
                      "using the model's whole trained range")
                self._fitted = self.denoiser.sigma_range
        return self._fitted

    def data_moments(self) -> Optional["DataMoments"]:
        """The data's moments (``samplers.start``): stored in the checkpoint at training; runs
        trained before they were stored fit them from their data set now (once per load), or
        have none (None: a standard-normal start) if that data set cannot be read here."""
        if self.moments is None and not getattr(self, "_moments_tried", False):
            self._moments_tried = True
            if "imported" in self.info:
                return None  # a foreign checkpoint (runs.diffusers_io) comes without its data: start from N(0, I)
            cfg = self.config
            try:
                data = open_dataset(cfg.data.name, cfg.data.options, min(cfg.data.num, 100_000), cfg.train.seed)
                self.moments = fit_data_moments(data)
            except DenoiselabError as e:
                log(f"warning: cannot read {cfg.data.name!r} to fit the data's moments ({e}); "
                      "sampling starts from N(0, I)")
        return self.moments


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


def load_run(run_dir: Path, use_ema: bool = True, device=None) -> LoadedRun:
    """Load a trained run for sampling: the architecture comes from the checkpoint's own config.
    The weights are read on the CPU and the network moved to ``device`` (default: the CPU), so a
    checkpoint written on any device loads on any other."""
    run_dir = Path(run_dir)
    from .diffusers_io import is_diffusers_folder

    if is_diffusers_folder(run_dir):
        return load_diffusers(run_dir, device)
    read_config(run_dir)  # clear error if this is not a run directory
    # The newest whole checkpoint: a corrupt latest one is named on stderr and the previous used.
    ck = load_latest(run_dir, log=log)
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
    from ..samplers.start import DataMoments

    codec = None
    if cfg.latent.autoencoder:
        from .latent import load_codec

        ae = Path(cfg.latent.autoencoder)
        # An imported latent model names its VAE relative to the run (runs.diffusers_io.VAE_DIR).
        codec = load_codec(ae if ae.is_absolute() else run_dir / ae, device)
    return LoadedRun(cfg, net, build_denoiser(cfg, net), ck["step"], run_dir, ck["extra"],
                     DataMoments.from_tensors(ck.get("moments") or {}), codec)


def load_diffusers(path: Path, device=None) -> LoadedRun:
    """A diffusers folder read as a run in memory (``runs.diffusers_io``), without writing one;
    a prompt-conditioned UNet needs ``denoiselab import diffusers PATH --prompts FILE`` first."""
    from .diffusers_io import read_folder

    imp = read_folder(path)
    net = place(imp.net, device) if device is not None else imp.net
    codec = imp.codec
    if codec is not None and device is not None:
        codec.net = place(codec.net, device)
    return LoadedRun(imp.config, net, build_denoiser(imp.config, net), 0, Path(path), imp.info, codec=codec)


def require_sampler(run: LoadedRun) -> None:
    if run.denoiser is None and run.config.diffusion.kind == "classifier":
        raise DenoiselabError(f"{run.run_dir} is a noise-aware classifier: it cannot be sampled; use it to guide "
                              f"a run with `denoiselab sample RUN --classifier {run.run_dir} --class K`")
    if run.denoiser is None and run.config.diffusion.kind == "autoencoder":
        raise DenoiselabError(f"{run.run_dir} is an autoencoder: it reconstructs images and cannot be sampled; "
                              f"score it with `denoiselab evaluate {run.run_dir} --ref data:{run.config.data.name}`")
    if run.denoiser is None:
        raise DenoiselabError(f"{run.run_dir} is a single-step denoiser (diffusion kind denoise): it cannot be "
                              "sampled; its pictures are denoiser_sigmas.png in the run directory")
