"""Export a run as a diffusers folder that ``DDPMPipeline.from_pretrained(DIR)`` loads offline
(``denoiselab export diffusers RUN --out DIR``).

Only a run whose network is diffusers' own ``UNet2DModel`` (model ``diffusers-unet2d``: trained
here with that model option, or imported) has a diffusers twin. The scheduler is a
``DDPMScheduler`` holding the run's betas as ``trained_betas``, so any of our schedules (custom
ones included) crosses exactly; prediction type and clipping map back as ``runs.diffusers_io``
maps them in.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DenoiselabError
from ..io import atomic_folder
from ..models.diffusers_nets import diffusers_module
from .load import LoadedRun, load_run

EXPORTABLE = ("diffusers-unet2d",)
PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SPACINGS = ("leading", "trailing", "linspace")


def scheduler_config(run: LoadedRun) -> dict:
    """The run's schedule as ``DDPMScheduler`` arguments."""
    d, s = run.config.diffusion, run.config.sample
    variance = getattr(run.net, "variance_output", None) or "fixed_small"
    return dict(num_train_timesteps=run.denoiser.schedule.T, trained_betas=run.denoiser.schedule.betas.tolist(),
                prediction_type=PREDICTION_TYPES[d.parameterization], clip_sample=d.clip_x0 > 0,
                clip_sample_range=d.clip_x0 or 1.0, variance_type=variance,
                timestep_spacing=s.grid if s.grid in SPACINGS else "leading")


def check_exportable(run: LoadedRun) -> None:
    name = run.config.model.name
    if run.config.diffusion.kind != "vp":
        raise DenoiselabError(f"{run.run_dir} is a {run.config.diffusion.kind} run: only VP (DDPM-family) runs "
                              "export to a DDPMPipeline")
    if run.config.latent.autoencoder:
        raise DenoiselabError(f"{run.run_dir} is a latent run: a DDPMPipeline samples pixels, so only pixel runs "
                              "export")
    if name not in EXPORTABLE:
        raise DenoiselabError(f"{run.run_dir}'s network {name!r} has no diffusers twin: only runs of model "
                              f"{', '.join(EXPORTABLE)} export (train one with --set model.name=diffusers-unet2d)")


def export_diffusers(run_dir, out, run: LoadedRun | None = None) -> Path:
    """Write ``out``: model_index.json, unet/ (config and safetensors weights), scheduler/. Built in
    a temporary folder beside it and renamed, so ``out`` is either absent or whole."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DenoiselabError(f"{out} already exists: choose a new --out folder")
    run = run or load_run(Path(run_dir))
    check_exportable(run)
    diffusers = diffusers_module()
    unet = run.net.unet
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**scheduler_config(run)))
    return atomic_folder(out, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True))


__all__ = ["EXPORTABLE", "check_exportable", "export_diffusers", "scheduler_config"]
