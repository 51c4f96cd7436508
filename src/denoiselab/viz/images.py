"""Pictures of image diffusion: sample grids, the forward and reverse processes as grids and
GIFs, pixel histograms against N(0, 1), and schedules compared on one image.

Images arrive as float NCHW tensors in [-1, 1] (the data frame of every image set).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..io import atomic_write
from ..process import q_sample
from ..schedules import NoiseSchedule, make_schedule
from .common import format_level, plt, save_fig, write_gif


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(N, C, H, W) in value_range -> (N, H, W, C) uint8 (C = 1 or 3)."""
    lo, hi = value_range
    u = ((x.detach().float().cpu().clamp(lo, hi) - lo) / (hi - lo) * 255.0).round().to(torch.uint8)
    return u.permute(0, 2, 3, 1).numpy()


def tile_images(x: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Tile N images into one (H, W, 3) uint8 array, ``nrow`` per row (default: near-square), on
    a white background; ``scale`` enlarges each pixel (nearest) so 28x28 digits stay crisp."""
    imgs = to_uint8(x, value_range)
    if imgs.shape[-1] == 1:
        imgs = np.repeat(imgs, 3, axis=-1)
    if scale > 1:
        imgs = imgs.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = imgs.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = imgs[i]
    return grid


def auto_scale(side: int) -> int:
    """How many times to enlarge each pixel of a picture ``side`` pixels wide: to about 64 pixels."""
    return max(1, 64 // side) if side < 64 else 1


def save_png(arr: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path = Path(path)
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
    return path


def save_grid(x: torch.Tensor, path: Path, nrow: int | None = None, scale: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """A grid of images as PNG (what ``denoiselab sample --out FILE.png`` writes for images)."""
    return save_png(tile_images(x, nrow, scale=scale or auto_scale(x.shape[-1]), value_range=value_range), path)


def caption_above(arr: np.ndarray, text: str) -> np.ndarray:
    """Put a caption strip above an (H, W, 3) array."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (arr.shape[1], 16), (255, 255, 255))
    ImageDraw.Draw(strip).text((3, 2), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), arr], axis=0)


def label_table(cells: list[list[np.ndarray]], row_labels: Sequence[str], column_labels: Sequence[str],
                gap: int = 6) -> np.ndarray:
    """Pictures of one size in rows and columns on white: each under its column's label, each row's
    label at its left (e.g. guidance scales x classes)."""
    h, wd = cells[0][0].shape[:2]
    canvas = np.full((len(cells) * (h + 16 + gap), len(column_labels) * (wd + gap) + 70, 3), 255, np.uint8)
    for i, (label, row) in enumerate(zip(row_labels, cells)):
        for j, (name, tile) in enumerate(zip(column_labels, row)):
            cap = caption_above(tile, name)
            y0, x0 = i * (h + 16 + gap), 70 + j * (wd + gap)
            canvas[y0:y0 + cap.shape[0], x0:x0 + cap.shape[1]] = cap
        strip = caption_above(np.full((h, 64, 3), 255, np.uint8), label)
        canvas[i * (h + 16 + gap):i * (h + 16 + gap) + strip.shape[0], :64] = strip
    return canvas


def _side_by_side(a: np.ndarray, b: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(a.shape[0], b.shape[0])
    pad = lambda z: np.pad(z, ((0, h - z.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(a), np.full((h, gap, 3), 255, np.uint8), pad(b)], axis=1)


def gif_reverse_images(shots: list[tuple[int, torch.Tensor, torch.Tensor]], path: Path, num: int = 16,
                       fps: float = 10.0, nrow: int | None = None) -> Path:
    """The reverse process: each frame shows x_t (left) beside the predicted x0 (right) for the
    first ``num`` samples (``nrow`` per row; default a square); the last shot (t = -1) is the final sample."""
    frames = []
    n = min(num, shots[0][1].shape[0])
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    scale = auto_scale(shots[0][1].shape[-1])
    for t, xt, x0 in shots:
        left = caption_above(tile_images(xt[:n], nrow, scale=scale), "x_t" if t < 0 else f"x_t, t = {format_level(t)}")
        right = caption_above(tile_images(x0[:n], nrow, scale=scale), "sample" if t < 0 else "predicted x0")
        frames.append(_side_by_side(left, right))
    return write_gif(frames, path, fps=fps)


def forward_images(x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], seed: int = 0) -> list[torch.Tensor]:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4) for each t, with one
    fixed eps so the frames differ only by t."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    return [q_sample(schedule, x0, torch.full((len(x0),), int(t)), eps) for t in ts]


def default_ts(T: int, n: int = 8) -> list[int]:
    return sorted({int(round(v)) for v in np.linspace(0, T - 1, n)})


def plot_forward_grid(x0: torch.Tensor, schedule: NoiseSchedule, path: Path, ts: Sequence[int] | None = None,
                      seed: int = 0) -> Path:
    """Rows: chosen images; columns: x_t at increasing t (t = 0 is the image itself)."""
    ts = list(ts) if ts is not None else default_ts(schedule.T)
    xs = forward_images(x0, schedule, ts, seed)
    n = len(x0)
    tiles = torch.stack(xs, dim=1).reshape(n * len(ts), *x0.shape[1:])  # row-major: image, then t
    grid = tile_images(tiles, nrow=len(ts), scale=auto_scale(x0.shape[-1]))
    header = "forward process q(x_t | x_0), columns t = " + ", ".join(str(t) for t in ts)
    return save_png(caption_above(grid, header), path)


def gif_forward_images(x0: torch.Tensor, schedule: NoiseSchedule, path: Path, frames: int = 40, seed: int = 0,
                       fps: float = 10.0) -> Path:
    ts = default_ts(schedule.T, frames)
    xs = forward_images(x0, schedule, ts, seed)
    scale = auto_scale(x0.shape[-1])
    images = [caption_above(tile_images(x, scale=scale), f"t = {t}, abar = {schedule.alpha_bar[t].item():.3f}")
              for t, x in zip(ts, xs)]
    return write_gif(images, path, fps=fps)


def pixel_stats(values: torch.Tensor) -> dict:
    """Mean, std and the Kolmogorov-Smirnov distance to N(0, 1) of a set of pixel values."""
    from scipy import stats

    v = values.detach().double().flatten().numpy()
    return {"mean": float(v.mean()), "std": float(v.std()), "ks": float(stats.kstest(v, "norm").statistic)}


def plot_pixel_histograms(x0: torch.Tensor, schedule: NoiseSchedule, path: Path, seed: int = 0,
                          max_values: int = 200_000) -> tuple[Path, dict]:
    """Per channel: the training pixels, the same images after the forward process at t = T - 1,
    and the N(0, 1) density; mean, std and KS statistic in each panel. The forward process ends
    near N(0, 1) because sqrt(abar_T) is near 0 (Ho et al. 2020, eq. 4)."""
    T = schedule.T
    xT = forward_images(x0, schedule, [T - 1], seed)[0]
    channels = x0.shape[1]
    names = ["gray"] if channels == 1 else (["red", "green", "blue"] if channels == 3 else [f"ch {c}" for c in range(channels)])
    colors = ["0.3"] if channels == 1 else ["tab:red", "tab:green", "tab:blue"] + ["0.3"] * channels
    fig, axes = plt.subplots(2, channels, figsize=(4.2 * channels, 6.4), squeeze=False)
    grid = np.linspace(-4, 4, 400)
    normal = np.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi)
    stats: dict = {"t": T - 1, "alpha_bar_T": float(schedule.alpha_bar[-1]), "data": {}, "x_T": {}}
    g = torch.Generator().manual_seed(seed)
    for c in range(channels):
        for row, (vals, key, title) in enumerate(((x0[:, c], "data", "training images"),
                                                   (xT[:, c], "x_T", f"after the forward process, t = {T - 1}"))):
            v = vals.flatten()
            if v.numel() > max_values:
                v = v[torch.randperm(v.numel(), generator=g)[:max_values]]
            st = pixel_stats(v)
            stats[key][names[c]] = st
            ax = axes[row, c]
            ax.hist(v.numpy(), bins=80, range=(-4, 4), density=True, color=colors[c], alpha=0.7)
            ax.plot(grid, normal, "k--", lw=1, label="N(0, 1)")
            ax.set_title(f"{names[c]}: {title}", fontsize=9)
            ax.text(0.02, 0.97, f"mean {st['mean']:+.3f}\nstd {st['std']:.3f}\nKS {st['ks']:.3f}",
                    transform=ax.transAxes, va="top", fontsize=8, family="monospace")
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Pixel distribution before and after the forward process")
    fig.tight_layout()
    return save_fig(fig, path), stats


def survival(x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Pearson correlation of x_t with x_0 over all pixels of the batch, per t: how much of the
    image survives. For x_t = a x0 + s eps it is about a std(x0) / sqrt(a^2 var(x0) + s^2)."""
    xs = forward_images(x0, schedule, ts, seed)
    a = (x0 - x0.mean()).flatten().double()
    out = []
    for x in xs:
        b = (x - x.mean()).flatten().double()
        out.append(float((a @ b) / (a.norm() * b.norm() + 1e-12)))
    return np.asarray(out)


def plot_schedule_images(x0: torch.Tensor, path: Path, T: int = 1000,
                         names: Sequence[str] = ("linear", "cosine", "quadratic", "sigmoid"),
                         ts: Sequence[int] | None = None, seed: int = 0, batch: torch.Tensor | None = None) -> tuple[Path, dict]:
    """Left: one image noised by each schedule at the same t values (same eps). Right: per
    schedule, corr(x_t, x_0) against t (on ``batch`` if given, else on the image), and the
    number of steps during which the correlation stays above 0.5."""
    ts = list(ts) if ts is not None else default_ts(T, 8)
    img = x0[:1]
    ref = batch if batch is not None else img
    fig = plt.figure(figsize=(2.0 * len(ts) + 5.5, 1.6 * len(names) + 1.2))
    gs = fig.add_gridspec(len(names), len(ts) + 3)
    all_t = np.arange(0, T, max(1, T // 200))
    summary = {}
    curve_ax = fig.add_subplot(gs[:, len(ts):])
    for r, name in enumerate(names):
        sched = make_schedule(name, T)
        xs = forward_images(img, sched, ts, seed)
        for c, (t, x) in enumerate(zip(ts, xs)):
            ax = fig.add_subplot(gs[r, c])
            arr = to_uint8(x)[0]
            ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
                      vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        corr = survival(ref, sched, all_t, seed)
        alive = int((corr > 0.5).sum() * (all_t[1] - all_t[0] if len(all_t) > 1 else 1))
        summary[name] = {"steps_corr_above_0.5": alive, "corr_at_T_half": float(np.interp(T // 2, all_t, corr))}
        curve_ax.plot(all_t, corr, label=f"{name} ({alive} steps > 0.5)")
    curve_ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    curve_ax.set_xlabel("t")
    curve_ax.set_ylabel(r"corr$(x_t, x_0)$")
    curve_ax.set_title("How much of the image survives", fontsize=9)
    curve_ax.legend(fontsize=7)
    curve_ax.grid(alpha=0.3)
    fig.suptitle(f"Schedules compared on one image (T = {T}, same noise)")
    fig.tight_layout()
    return save_fig(fig, path), summary


def plot_denoiser_sigmas(x: torch.Tensor, denoise: Callable[[torch.Tensor], torch.Tensor], path: Path,
                         sigmas: Sequence[float] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0), seed: int = 0,
                         value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[Path, dict]:
    """CS180 part B.1: for each sigma, z = x + sigma eps (top) and the denoiser's output (bottom),
    with the MSE to the clean image per sigma."""
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    tiles, mse = [], {}
    with torch.no_grad():
        for s in sigmas:
            z = x + s * eps
            out = denoise(z)
            mse[f"{s:g}"] = float((out - x).pow(2).mean())
            tiles.append((z, out))
    n = len(x)
    rows = []
    for i in range(n):
        rows += [tiles[k][0][i] for k in range(len(sigmas))]
        rows += [tiles[k][1][i] for k in range(len(sigmas))]
    grid = tile_images(torch.stack(rows), nrow=len(sigmas), scale=auto_scale(x.shape[-1]), value_range=value_range)
    header = "sigma = " + ", ".join(f"{s:g}" for s in sigmas) + " (rows: noisy z, denoised)"
    return save_png(caption_above(grid, header), path), mse
