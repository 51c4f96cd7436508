"""The pictures a run directory gets after training, and the reverse-process GIF.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from ..data import TensorData
from ..device import module_device
from .build import open_dataset
from .conditions import classifier_accuracy_by_t, load_classifier
from .load import LoadedRun, load_run, require_sampler
from .plan import SamplingPlan, sampling_plan


def reverse_frames(run: LoadedRun, *, sampler: Optional[str] = None, steps: Optional[int] = None, seed: int, num: int,
                   frames: int, opts: Optional[dict] = None, denoiser=None, cond=None,
                   plan: Optional["SamplingPlan"] = None):
    """Run a sampler and keep about ``frames`` evenly spaced (t, x_t, x0_hat) snapshots plus the result.
    ``denoiser`` (e.g. a guided one) and ``cond`` replace the run's own unconditional denoiser.
    ``plan`` (or sampler/steps/opts, completed by sampling_plan) says how to sample."""
    from ..samplers.api import generate

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
    # A latent run's frames are decoded, each x_t and x0_hat, so the GIF shows images.
    return [(t, run.decode(a), run.decode(b)) for t, a, b in shots] if run.codec is not None else shots


def reverse_gif(run: LoadedRun, path: Path, *, sampler: Optional[str] = None, steps: Optional[int] = None,
                seed: int = 0, num: int = 1024, frames: int = 50, opts: dict | None = None, data: torch.Tensor | None = None,
                denoiser=None, cond=None, nrow: int | None = None, plan: Optional["SamplingPlan"] = None) -> Path:
    """GIF of the reverse process; sampled as ``plan`` says (default: the run's own sampling_plan)."""
    from ..viz.plots import gif_reverse_points

    shots = reverse_frames(run, sampler=sampler, steps=steps, seed=seed, num=num, frames=frames, opts=opts,
                           denoiser=denoiser, cond=cond, plan=plan)
    if run.kind == "points":
        if data is None:
            data = open_dataset(run.config.data.name, run.config.data.options, 2048, 1).x
        return gif_reverse_points([s[1] for s in shots], [max(s[0], 0) for s in shots], path, data=data)
    from ..viz.images import gif_reverse_images

    # A class-conditional GIF shows every sample, one class per column; others the first 16.
    return gif_reverse_images(shots, path, **({"num": num, "nrow": nrow} if nrow else {}))


def run_pictures(out: Path, data: TensorData, device=None) -> list[Path]:
    """The pictures every run directory gets after training, drawn on ``device``."""
    from ..samplers.api import generate
    from ..viz import plots

    out = Path(out)
    written = [plots.plot_loss(out / "metrics.jsonl", out / "loss.png")]
    kind = load_run(out, device=device).config.diffusion.kind
    if kind == "classifier":
        return written + classifier_pictures(out, data)
    if kind == "autoencoder":
        return written + autoencoder_pictures(out, data, device=device)
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
    from ..viz import images as V

    out = Path(out)
    run = load_run(out, device=device)
    cfg = run.config
    g = torch.Generator().manual_seed(seed)
    pick = data.x[torch.randperm(len(data), generator=g)[:16]]
    numbers: dict = {}
    # The first training batch exactly as the trainer draws it (flips included): what the model learns from.
    value_range = (0.0, 1.0) if data.x.min() >= 0 and run.codec is None else (-1.0, 1.0)
    written = [V.save_grid(run.decode(data.batch(0, 64, cfg.train.seed)[0]), out / "dataset_summary.png", nrow=8,
                           value_range=value_range)]
    if cfg.diffusion.kind == "denoise":
        written.append(_denoiser_pictures(run, pick[:6], out, value_range, numbers))
    else:
        written += _sample_pictures(run, out, num, seed, numbers)
        # Flows have no beta schedule, and a latent run's pixel histograms would be of latents: no
        # forward-process pictures for either.
        if run.denoiser.schedule is not None and run.codec is None:
            written += _forward_pictures(run.denoiser.schedule, pick, data.x, out, numbers)
    _save_numbers(out, numbers)
    return written


def _denoiser_pictures(run: LoadedRun, x: torch.Tensor, out: Path, value_range, numbers: dict) -> Path:
    """A single-step denoiser's sigma sweep (CS180 part B.1), its MSE by sigma into ``numbers``."""
    from ..viz import images as V

    dev = module_device(run.net)
    path, numbers["denoiser_mse_by_sigma"] = V.plot_denoiser_sigmas(
        x, lambda z: run.net(z.to(dev), None, None).cpu(), out / "denoiser_sigmas.png", value_range=value_range)
    return path


def _sample_pictures(run: LoadedRun, out: Path, num: int, seed: int, numbers: dict) -> list[Path]:
    """samples.png and reverse.gif, both with the preset's own sampler, steps and grid; how they were
    sampled into ``numbers``. Text runs get every colour x digit prompt, class-conditional runs
    every class, guided."""
    from ..samplers.api import generate
    from ..viz import images as V
    from .conditions import guided_run, is_text, num_classes

    plan = sampling_plan(run)
    s = run.config.sample
    k = num_classes(run)
    if is_text(run):
        # Text runs: "a <colour> <digit>" for every colour (rows) and digit (columns).
        from ..data.captioned import COLOURS, DIGIT_WORDS, caption

        prompts = [caption("a {c} {w}", d, c) for c in COLOURS for d in range(len(DIGIT_WORDS))]
        den, cond = guided_run(run, len(prompts), prompts=prompts)
        x, nfe = generate(den, len(prompts), run.sample_shape, seed=seed, cond=cond, progress=True,
                          **plan.kwargs())
        written = [V.save_grid(run.decode(x), out / "samples.png", nrow=len(DIGIT_WORDS))]
        numbers["samples"] = plan.record(nfe, len(prompts), guidance=s.guidance,
                                         prompts="a <colour> <digit>: colours by row, digits by column")
        den, cond = guided_run(run, 10, prompts=prompts[:10])
        return written + [reverse_gif(run, out / "reverse.gif", num=10, frames=25, denoiser=den, cond=cond,
                                      nrow=10, plan=plan)]
    if k:
        # The CS180 picture: 4 samples of each class, one class per column; and guided sampling as a GIF.
        den, cond = guided_run(run, 4 * k)
        x, nfe = generate(den, 4 * k, run.sample_shape, seed=seed, cond=cond, progress=True,
                          **plan.kwargs())
        written = [V.save_grid(run.decode(x), out / "samples.png", nrow=k)]
        numbers["samples"] = plan.record(nfe, 4 * k, guidance=s.guidance, classes="one per column")
        den, cond = guided_run(run, 2 * k)
        return written + [reverse_gif(run, out / "reverse.gif", num=2 * k, frames=25, denoiser=den, cond=cond,
                                      nrow=k, plan=plan)]
    x, nfe = generate(run.denoiser, num, run.sample_shape, seed=seed, progress=True, **plan.kwargs())
    written = [V.save_grid(run.decode(x), out / "samples.png")]
    numbers["samples"] = plan.record(nfe, num)
    return written + [reverse_gif(run, out / "reverse.gif", num=16, frames=25, plan=plan)]


def _forward_pictures(schedule, pick: torch.Tensor, images: torch.Tensor, out: Path, numbers: dict) -> list[Path]:
    """The forward process on a few training images (``pick``): a grid and a GIF, pixel histograms
    at t = T and the schedules compared on one image; their numbers into ``numbers``."""
    from ..viz import images as V

    written = [V.plot_forward_grid(pick[:6], schedule, out / "forward.png"),
               V.gif_forward_images(pick, schedule, out / "forward.gif")]
    path, numbers["pixel_histograms"] = V.plot_pixel_histograms(images[:1000], schedule, out / "histograms.png")
    written.append(path)
    path, numbers["schedule_survival"] = V.plot_schedule_images(pick[:1], out / "schedule_images.png", T=schedule.T,
                                                                batch=images[:256])
    written.append(path)
    return written


def _save_numbers(out: Path, numbers: dict) -> Path:
    """``pictures.json``: the numbers beside a run's pictures (the run page shows them)."""
    from ..io import atomic_write

    path = Path(out) / "pictures.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(numbers, indent=2)))
    return path


def classifier_pictures(out: Path, data) -> list[Path]:
    """A classifier run's numbers: training-set accuracy at several noise levels, in ``pictures.json``."""
    clf = load_classifier(out)
    n = min(2000, len(data))
    return [_save_numbers(out, {"train_accuracy_by_t": classifier_accuracy_by_t(clf, data.x[:n], data.y[:n])})]


def autoencoder_pictures(out: Path, data: TensorData, num: int = 32, device=None) -> list[Path]:
    """An autoencoder run: reconstructions.png, rows of held-out images (the data set's own held-out
    split where it has one, else training images) each above its reconstruction; their PSNR and
    SSIM and the fitted latent scale into ``pictures.json``."""
    from ..evaluation.reconstruction import psnr, reconstruct, ssim
    from ..viz import images as V

    run = load_run(out, device=device)
    held = getattr(data, "heldout", None)
    src = held if held is not None and len(held) else data
    pick = torch.randperm(len(src), generator=torch.Generator().manual_seed(0))[:num]
    x = src.x[pick]
    x_hat = reconstruct(run.net, x)
    per_row = 8
    rows = [t for i in range(0, len(x), per_row) for t in (x[i:i + per_row], x_hat[i:i + per_row])]
    path = V.save_grid(torch.cat(rows), Path(out) / "reconstructions.png", nrow=per_row)
    numbers = {"reconstructions": {"images": "held-out" if src is held else "training", "num": len(x),
                                   "psnr": float(psnr(x, x_hat).mean()), "ssim": float(ssim(x, x_hat).mean()),
                                   "latent_scale": float(run.net.latent_scale)}}
    return [path, _save_numbers(out, numbers)]
