"""Figure helpers: headless matplotlib, atomic saves, figure -> RGB array, GIF writing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_fig(fig, path: Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def fig_to_array(fig, dpi: int = 80) -> np.ndarray:
    fig.set_dpi(dpi)
    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return arr


def write_gif(frames: list[np.ndarray], path: Path, fps: float = 12.0, hold_last: int = 12) -> Path:
    """Write frames (H, W, 3 uint8) as a looping GIF; the last frame is held so the result is seen."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames) + [frames[-1]] * hold_last
    imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    return path


def format_level(v) -> str:
    """A time or noise level for a title: integers as they are ("t = 250"), other values to 4
    significant figures ("t = 629.5", "sigma = 0.002"), never a raw float repr."""
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:.4g}"
