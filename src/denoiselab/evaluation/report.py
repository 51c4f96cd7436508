"""Scoring samples against reference data, with the floor (real vs real) beside each number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data import TOY_DATASETS, load_toy
from ..errors import DenoiselabError
from .chamfer import chamfer_distance


def load_reference(ref: str, n: int, seed: int) -> torch.Tensor:
    if ref in TOY_DATASETS:
        return load_toy(ref, n, seed)
    p = Path(ref)
    if p.suffix == ".npy" and p.is_file():
        return torch.from_numpy(np.load(p)).float()
    raise DenoiselabError(f"reference {ref!r} is neither a 2D data set ({', '.join(TOY_DATASETS)}) nor a .npy file")


def evaluate_points(x: torch.Tensor, ref: str, seed: int = 10_000) -> dict:
    """Chamfer distance (KAIST grading: squared NN distances, summed, both ways) of 2D samples."""
    if x.ndim != 2 or x.shape[1] != 2:
        raise DenoiselabError(f"2D evaluation needs samples of shape (N, 2), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DenoiselabError("samples contain NaN or inf: the model or sampler diverged")
    n = len(x)
    y = load_reference(ref, n, seed)
    if y.shape[1:] != x.shape[1:]:
        raise DenoiselabError(f"reference shape {tuple(y.shape)} does not match samples {tuple(x.shape)}")
    y = y[:n]
    floor = None
    if ref in TOY_DATASETS:
        floor = chamfer_distance(load_toy(ref, len(y), seed + 1), y)
    return {"num": n, "ref": ref, "metrics": {"chamfer": {"value": chamfer_distance(x, y), "floor": floor if floor is not None else float("nan")}}}


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
