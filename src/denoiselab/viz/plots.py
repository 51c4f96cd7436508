"""Plots of schedules, losses and 2D point clouds, and GIFs of the processes on points."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..io import read_jsonl
from ..process import q_sample
from ..schedules import NoiseSchedule, make_schedule
from .common import fig_to_array, format_level, plt, save_fig, write_gif


def plot_schedules(path: Path, T: int = 1000, names: Sequence[str] = ("linear", "cosine", "quadratic", "sigmoid")) -> Path:
    """beta_t, alpha_bar_t and log-SNR(t) of each schedule, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name in names:
        s = make_schedule(name, T)
        t = np.arange(T)
        axes[0].plot(t, s.betas.numpy(), label=name)
        axes[1].plot(t, s.alpha_bar.numpy(), label=name)
        axes[2].plot(t, s.log_snr.numpy(), label=name)
    for ax, title in zip(axes, [r"$\beta_t$", r"$\bar\alpha_t$", r"log-SNR $\log(\bar\alpha_t/(1-\bar\alpha_t))$"]):
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"Noise schedules, T = {T}")
    return save_fig(fig, path)


def plot_loss(metrics_path: Path, path: Path) -> Path:
    rows = [r for r in read_jsonl(metrics_path) if "loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if rows:
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean per log interval)")
    ax.grid(alpha=0.3)
    ax.set_title("Loss curve")
    return save_fig(fig, path)


def _scatter(ax, pts, lim, **kw):
    pts = np.asarray(pts)
    ax.scatter(pts[:, 0], pts[:, 1], s=kw.pop("s", 2), alpha=kw.pop("alpha", 0.6), **kw)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_forward_points(points: torch.Tensor, schedule: NoiseSchedule, path: Path,
                        ts: Sequence[int] | None = None, seed: int = 0) -> Path:
    """The forward process q(x_t | x_0) of a point cloud at several t."""
    T = schedule.T
    ts = list(ts) if ts is not None else [0, T // 20, T // 10, T // 4, T // 2, T - 1]
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(points.shape, generator=g)
    fig, axes = plt.subplots(1, len(ts), figsize=(2.6 * len(ts), 2.8))
    lim = max(4.5, float(points.abs().max()) * 1.1)
    for ax, t in zip(axes, ts):
        xt = q_sample(schedule, points, torch.full((len(points),), t), eps)
        _scatter(ax, xt, lim)
        ax.set_title(f"t = {t}, " + r"$\bar\alpha$" + f" = {schedule.alpha_bar[t].item():.3f}", fontsize=9)
    fig.suptitle(r"Forward process $q(x_t \mid x_0)$")
    return save_fig(fig, path)


def plot_samples_over_data(samples: torch.Tensor, data: torch.Tensor | None, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    frame = data if data is not None and len(data) else samples
    # The 99.5th percentile, so a few stray samples do not shrink the picture to a dot.
    lim = max(4.5, float(torch.quantile(frame.abs().flatten().float(), 0.995)) * 1.15)
    if data is not None and len(data):
        _scatter(ax, data, lim, c="0.7", label="data", s=2)
    _scatter(ax, samples, lim, c="tab:red", label="samples", s=2)
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title or "Samples over data")
    return save_fig(fig, path)


def gif_reverse_points(frames: list[torch.Tensor], ts: list[int], path: Path, data: torch.Tensor | None = None,
                       fps: float = 12.0) -> Path:
    """Particles flowing from noise to the data: one frame per recorded sampler step."""
    lim = 4.5 if data is None else max(4.5, float(data.abs().max()) * 1.1)
    images = []
    for x, t in zip(frames, ts):
        fig, ax = plt.subplots(figsize=(4, 4))
        if data is not None:
            _scatter(ax, data, lim, c="0.85", s=1)
        _scatter(ax, x, lim, c="tab:blue", s=2)
        ax.set_title(f"reverse process, t = {format_level(t)}")
        images.append(fig_to_array(fig))
    return write_gif(images, path, fps=fps)
