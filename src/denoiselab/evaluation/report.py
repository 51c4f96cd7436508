"""Scoring samples against reference data, with the floor (real vs real) beside each number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data import DATASETS, TOY_DATASETS, default_mixture, load_toy
from ..errors import DenoiselabError
from .chamfer import chamfer_distance
from .mmd import mmd_rbf
from .points import mixture_nll, sliced_wasserstein

NEGATIVE_NOTE = "(MMD and KID are unbiased estimates: values near 0 may be negative)"


def reference_kind(ref: str) -> str:
    """What a reference holds: "points" (a 2D data set, a .npy of points) or "images" (an image data
    set, an image folder)."""
    return "points" if ref in TOY_DATASETS or Path(ref).suffix.lower() == ".npy" else "images"


def check_reference(kind: str, ref: str, shape: tuple = ()) -> None:
    """One line when samples of ``kind`` ("points" or "images", of ``shape``) cannot be scored
    against ``ref``: called before sampling, so the mismatch costs nothing."""
    if reference_kind(ref) == kind:
        return
    if kind == "points":
        what = "an image data set" if ref in DATASETS else "an image folder"
        raise DenoiselabError(f"the samples are 2D points but --ref {ref} is {what}: compare with a 2D data set "
                              f"({', '.join(TOY_DATASETS)}) or a .npy of points")
    what = "a 2D data set" if ref in TOY_DATASETS else "a .npy file (read as 2D points)"
    images = f"images {tuple(shape)}" if shape else "images"
    raise DenoiselabError(f"the samples are {images} but --ref {ref} is {what}: compare images with an image "
                          "data set (mnist, digits, ...) or an image folder")


def read_reference_points(path) -> torch.Tensor:
    """A reference .npy of 2D points, (N, 2)."""
    from ..io import load_npy

    x = load_npy(path, "--ref", ndims=(2,))
    if x.shape[1] != 2:
        raise DenoiselabError(f"--ref {path} has shape {x.shape}: a reference .npy holds 2D points, shape (N, 2)")
    return torch.from_numpy(x.astype(np.float32))


def load_reference(ref: str, n: int, seed: int) -> torch.Tensor:
    check_reference("points", ref)
    return load_toy(ref, n, seed) if ref in TOY_DATASETS else read_reference_points(ref)


def _point_metrics(x: torch.Tensor, y: torch.Tensor, ref: str) -> dict[str, float]:
    out = {"chamfer": chamfer_distance(x, y), "MMD": mmd_rbf(x, y), "SWD": sliced_wasserstein(x, y)}
    if ref == "gaussians":
        out["NLL"] = mixture_nll(x.numpy(), default_mixture())
    return out


def evaluate_points(x: torch.Tensor, ref: str, seed: int = 10_000) -> dict:
    """2D samples against a reference draw: chamfer (KAIST grading: squared NN distances, summed,
    both ways), unbiased RBF MMD^2, sliced Wasserstein SW_2 and, on the Gaussian mixture, the
    exact NLL. The floor of each is the same metric for a second, independent draw of true data
    (for NLL: the true samples' NLL, an estimate of the entropy)."""
    if x.ndim != 2 or x.shape[1] != 2:
        raise DenoiselabError(f"2D evaluation needs samples of shape (N, 2), got {tuple(x.shape)}")
    if len(x) < 2:
        raise DenoiselabError(f"2D evaluation needs at least 2 samples, got {len(x)}")
    if not torch.isfinite(x).all():
        raise DenoiselabError("samples contain NaN or inf: the model or sampler diverged")
    n = len(x)
    y = load_reference(ref, n, seed)
    if y.shape[1:] != x.shape[1:]:
        raise DenoiselabError(f"reference shape {tuple(y.shape)} does not match samples {tuple(x.shape)}")
    y = y[:n]
    values = _point_metrics(x, y, ref)
    floors = _point_metrics(load_toy(ref, len(y), seed + 1), y, ref) if ref in TOY_DATASETS else {}
    return {"num": n, "ref": ref, "kind": "points",
            "metrics": {k: {"value": v, "floor": floors.get(k, float("nan"))} for k, v in values.items()}}


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def format_results(results: dict) -> str:
    """One line per metric: value, interval or standard error, and the floor (real vs real)."""
    lines = []
    feats = results.get("features")
    if feats:
        acc = feats.get("heldout_accuracy")
        extra = f", held-out accuracy {acc:.4f}" if acc is not None else ""
        lines.append(f"features: {feats['network']} ({feats['dim']}-d{extra}); {results['num']} samples vs "
                     f"{results['num_ref']} reference images of {results['ref']}; floor from {results['num_floor']} real images")
    for name, r in results["metrics"].items():
        v = r["value"]
        text = f"{name:15s} {v:12.6g}"
        if "se" in r:
            text += f" +- {r['se']:.2g}"
        if "ci" in r:
            text += f"  [95% CI {r['ci'][0]:.6g}, {r['ci'][1]:.6g}]"
        if "balanced" in r:
            text += f"  (mean over classes {r['balanced']:.4g})"
        floor = (f"floor {r['floor']:.6g}: real vs real" if np.isfinite(r["floor"]) else
                 "no floor: a reference file cannot be drawn twice")
        lines.append(f"{text:60s} ({floor})")
    printed = [v for r in results["metrics"].values() for v in (r["value"], r["floor"], *r.get("ci", ()))]
    if any(v < 0 for v in printed):
        lines.append(NEGATIVE_NOTE)
    return "\n".join(lines)


def write_metrics_report(run_dir: Path) -> Path:
    """RUN_DIR/evaluation.md: every evaluation recorded in metrics.jsonl, newest first."""
    from ..io import atomic_write, read_jsonl

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    records = [r for r in read_jsonl(path) if isinstance(r, dict) and "evaluate" in r] if path.is_file() else []
    out = ["# Evaluation", "", f"Run `{run_dir.name}`: {len(records)} evaluation(s), newest first. "
           "Each score is read against its floor, the same metric for real data against real data.", ""]
    for rec in reversed(records):
        res = rec["evaluate"]
        sampler = f"{rec.get('sampler')}, {rec.get('steps')} steps" if rec.get("sampler") else "samples file"
        out += [f"## {rec.get('time', '')} against {res.get('ref')} ({res.get('num')} samples; {sampler})", ""]
        feats = res.get("features")
        if feats:
            acc = feats.get("heldout_accuracy")
            out += [f"Features: {feats['network']}, {feats['dim']}-d"
                    + (f", held-out accuracy {acc:.4f}" if acc is not None else "") + ".", ""]
        out += ["| metric | value | 95% interval | floor |", "| --- | --- | --- | --- |"]
        for name, r in res["metrics"].items():
            ci = f"{r['ci'][0]:.5g} to {r['ci'][1]:.5g}" if "ci" in r else ""
            se = f" +- {r['se']:.2g}" if "se" in r else ""
            out.append(f"| {name} | {r['value']:.5g}{se} | {ci} | {r['floor']:.5g} |")
        for w in res.get("warnings", []):
            out.append(f"\n> warning: {w}")
        out.append("")
    report = run_dir / "evaluation.md"
    atomic_write(report, lambda tmp: Path(tmp).write_text("\n".join(out) + "\n"))
    return report
