"""Checkpoints: one safetensors file holding weights, EMA weights, optimizer tensors and RNG
state, with the run config and the non-tensor state as JSON metadata. No pickle, written
atomically (temp file, fsync, rename), so a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import DenoiselabError


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over ``path``: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, st in state["state"].items():
        meta["state"][str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.contiguous()
            else:
                meta["state"][str(idx)][k] = v
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, *, model: torch.nn.Module, config: dict, step: int,
                    ema: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                    rng_state: torch.Tensor | None = None, extra: dict | None = None) -> None:
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous().clone() for k, v in ema.state_dict().items()})
    meta: dict[str, Any] = {"step": step, "extra": extra or {}}
    if optimizer is not None:
        t, m = _flatten_optimizer(optimizer.state_dict())
        tensors.update(t)
        meta["optimizer"] = m
    if rng_state is not None:
        tensors["rng.state"] = rng_state
    metadata = {"format": "denoiselab-checkpoint-1", "config": json.dumps(config), "state": json.dumps(meta)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: Path) -> dict:
    """Returns {config, step, model, ema, optimizer, rng_state, extra}; clear errors if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DenoiselabError(f"checkpoint not found: {path} (train first, or pass the run directory)")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        config = json.loads(metadata["config"])
        meta = json.loads(metadata["state"])
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as e:
        raise DenoiselabError(f"checkpoint {path} is corrupt or not a denoiselab checkpoint ({type(e).__name__}): "
                              "retrain or restore it from a backup") from None
    split: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}}
    for k, v in tensors.items():
        head, _, rest = k.partition(".")
        if head in split:
            split[head][rest] = v
    return {
        "config": config,
        "step": meta["step"],
        "model": split["model"],
        "ema": split["ema"] or None,
        "optimizer": _unflatten_optimizer(tensors, meta["optimizer"]) if "optimizer" in meta else None,
        "rng_state": tensors.get("rng.state"),
        "extra": meta.get("extra", {}),
    }
