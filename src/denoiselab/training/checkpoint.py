"""Checkpoints: one safetensors file holding weights, EMA weights, optimizer tensors and RNG
state, with the run config and the non-tensor state as JSON metadata. No pickle.

Never lose a run:
- every file is written to a temp file, fsynced and renamed (``atomic_write``), so a reader, or
  a run killed at any moment, sees the old file or the new one, never half of one;
- each checkpoint carries its payload size and a SHA-256 over its tensors and metadata, so a
  truncated or bit-flipped file is detected on load (``verify``), not trained on;
- a run keeps its last ``train.keep_checkpoints`` checkpoints in ``RUN_DIR/checkpoints/``
  (``step0001200.safetensors``); ``RUN_DIR/checkpoint.safetensors``, the public name of the
  latest one, is a hard link to the newest (a copy where links are not possible);
- ``load_latest`` takes the newest whole checkpoint of a run and says in one line which one it
  skipped and why.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import DenoiselabError
from ..io import atomic_write, fsync_dir

FORMAT = "denoiselab-checkpoint-1"
LATEST = "checkpoint.safetensors"       # the public name (README, load_run, benchmarks)
HISTORY = "checkpoints"                 # RUN_DIR/checkpoints/stepNNNNNNN.safetensors
_HISTORY_RE = re.compile(r"^step(\d+)\.safetensors$")
_TMP_RE = re.compile(r"^\..+\.tmp$")    # atomic_write's temp files: ".NAME.XXXX.tmp"










def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files left by a process killed inside atomic_write (kill -9 skips every cleanup)."""
    removed = []
    for d in (Path(run_dir), Path(run_dir) / HISTORY):
        if d.is_dir():
            for p in d.iterdir():
                if _TMP_RE.match(p.name) and p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


# -- integrity -------------------------------------------------------------------------------

def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, int]:
    """SHA-256 over every tensor (name, dtype, shape, bytes, in name order) and every metadata
    entry, and the payload size in bytes: independent of how safetensors lays the file out."""
    h = hashlib.sha256()
    nbytes = 0
    for k in sorted(metadata):
        h.update(f"meta:{k}={metadata[k]}\0".encode())
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(f"tensor:{k}:{t.dtype}:{tuple(t.shape)}\0".encode())
        raw = t.reshape(-1).view(torch.uint8)
        h.update(raw.numpy().tobytes())
        nbytes += t.numel() * t.element_size()
    return h.hexdigest(), nbytes


class CorruptCheckpoint(DenoiselabError):
    """A checkpoint file that is truncated, bit-flipped or unreadable; ``why`` says which."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(f"checkpoint {path} is corrupt ({why}): resume from an earlier checkpoint, "
                         "retrain, or restore it from a backup")


def _corrupt(path: Path, why: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(path, why)


# -- optimizer state as tensors + JSON --------------------------------------------------------

def _host(v: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy: files hold no device, so a checkpoint written on a GPU loads anywhere
    (``load_file`` reads to the CPU; the network is moved where it runs after loading)."""
    v = v.detach().contiguous()
    return v.clone() if v.device.type == "cpu" else v.to("cpu")


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, st in state["state"].items():
        meta["state"][str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = _host(v)
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


# -- save / load -----------------------------------------------------------------------------

def save_checkpoint(path: Path, *, model: torch.nn.Module, config: dict, step: int,
                    ema: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                    rng_state: torch.Tensor | None = None, rng_states: dict[str, torch.Tensor] | None = None,
                    extra: dict | None = None, moments: dict[str, torch.Tensor] | None = None,
                    objective: dict[str, torch.nn.Module] | None = None) -> None:
    """Write one checkpoint file atomically. ``rng_states``: named generator states (the
    trainer's generator, torch's global CPU generator, CUDA's), restored by the trainer.
    ``moments``: the data's moments for sampling (``samplers.start.DataMoments.tensors``).
    ``objective``: modules an objective keeps between steps (a distillation's target network)."""
    tensors = {f"model.{k}": _host(v) for k, v in model.state_dict().items()}
    for name, module in (objective or {}).items():
        tensors.update({f"objective.{name}.{k}": _host(v) for k, v in module.state_dict().items()})
    if ema is not None:
        tensors.update({f"ema.{k}": _host(v) for k, v in ema.state_dict().items()})
    meta: dict[str, Any] = {"step": step, "extra": extra or {}}
    if optimizer is not None:
        t, m = _flatten_optimizer(optimizer.state_dict())
        tensors.update(t)
        meta["optimizer"] = m
    if rng_state is not None:
        tensors["rng.state"] = rng_state
    for name, st in (rng_states or {}).items():
        tensors[f"rng.{name}"] = _host(st)
    tensors.update({k: _host(v) for k, v in (moments or {}).items()})
    metadata = {"format": FORMAT, "config": json.dumps(config), "state": json.dumps(meta)}
    sha, nbytes = _digest(tensors, metadata)
    metadata.update(sha256=sha, payload_bytes=str(nbytes))
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _read_verified(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise _corrupt(path, f"{size} bytes, shorter than any safetensors file")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > size - 8:
        raise _corrupt(path, f"truncated: the header alone needs {header_len + 8} bytes, the file has {size}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _corrupt(path, f"unreadable: {type(e).__name__}") from None
    if metadata.get("format") != FORMAT:
        raise DenoiselabError(f"{path} is not a denoiselab checkpoint (format {metadata.get('format')!r}): "
                              "pass a run directory made by `denoiselab train`")
    want_sha, want_bytes = metadata.pop("sha256", None), metadata.pop("payload_bytes", None)
    if want_sha is not None:  # files written before integrity data was stored carry none
        if size != 8 + header_len + int(want_bytes):
            raise _corrupt(path, f"truncated: {size} bytes, expected {8 + header_len + int(want_bytes)}")
        sha, _ = _digest(tensors, metadata)
        if sha != want_sha:
            raise _corrupt(path, "SHA-256 mismatch: the file changed after it was written")
    return tensors, metadata


def load_checkpoint(path: Path) -> dict:
    """Returns {config, step, model, ema, optimizer, rng_state, rng, extra, moments, objective}; clear errors if missing,
    truncated or corrupt (size and SHA-256 checked)."""
    path = Path(path)
    if not path.is_file():
        raise DenoiselabError(f"checkpoint not found: {path} (train first, or pass the run directory)")
    tensors, metadata = _read_verified(path)
    try:
        config = json.loads(metadata["config"])
        meta = json.loads(metadata["state"])
        step = int(meta["step"])
    except (KeyError, ValueError, TypeError) as e:
        raise _corrupt(path, f"bad metadata: {type(e).__name__}") from None
    split: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "rng": {}, "moments": {}, "objective": {}}
    for k, v in tensors.items():
        head, _, rest = k.partition(".")
        if head in split:
            split[head][rest] = v
    return {
        "config": config,
        "step": step,
        "model": split["model"],
        "ema": split["ema"] or None,
        "optimizer": _unflatten_optimizer(tensors, meta["optimizer"]) if "optimizer" in meta else None,
        "rng_state": split["rng"].get("state"),
        "rng": split["rng"],
        "extra": meta.get("extra", {}),
        "moments": split["moments"],
        "objective": split["objective"],  # "NAME.key": the state of the objective's module NAME
        "path": path,
    }


# -- a run's checkpoints ---------------------------------------------------------------------

def history_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / HISTORY / f"step{step:07d}.safetensors"


def history(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the kept checkpoints, newest first."""
    d = Path(run_dir) / HISTORY
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _HISTORY_RE.match(p.name))]
    return sorted(found, reverse=True)


def candidates(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, newest first: the kept ones, then the public file (which is a link
    to the newest kept one, or the only file of a run made before checkpoints were kept)."""
    out, seen = [], set()
    for p in [p for _, p in history(run_dir)] + [Path(run_dir) / LATEST]:
        try:
            st = p.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(p)
    return out


def load_latest(run_dir: Path, log: Optional[Callable[[str], None]] = None) -> Optional[dict]:
    """The newest whole checkpoint of a run, or None if it has none. Corrupt ones are skipped and
    named in one line through ``log``; if every one is corrupt, one error names them."""
    skipped: list[CorruptCheckpoint] = []
    for p in candidates(run_dir):
        try:
            ck = load_checkpoint(p)
        except CorruptCheckpoint as e:
            skipped.append(e)
            continue
        if skipped and log:
            log(f"warning: {_describe(skipped)}: using the previous whole checkpoint {p} (step {ck['step']})")
        return ck
    if skipped:
        raise DenoiselabError(f"every checkpoint of {run_dir} is corrupt ({_describe(skipped)}): retrain, or "
                              "restore one from a backup")
    return None


def _describe(skipped: list[CorruptCheckpoint]) -> str:
    first = f"checkpoint {skipped[0].path} is corrupt ({skipped[0].why})"
    return first + (f", and {len(skipped) - 1} more" if len(skipped) > 1 else "")


def commit_checkpoint(run_dir: Path, step: int, keep: int, write: Callable[[Path], None]) -> Path:
    """Write the checkpoint of ``step`` into the history (``write(path)`` saves atomically), point
    the public ``checkpoint.safetensors`` at it, and keep the ``keep`` newest. A failure leaves
    every earlier checkpoint as it was; a full disk becomes one clear error."""
    run_dir = Path(run_dir)
    target = history_path(run_dir, step)
    try:
        write(target)
        _publish(target, run_dir / LATEST)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            last = next((p for s, p in history(run_dir) if s != step and p.is_file()), None)
            raise DenoiselabError(
                f"disk full while writing the checkpoint of step {step} to {run_dir}: free some space and run "
                f"the same command with --resume; the last good checkpoint is "
                f"{last if last else 'none'} (untouched)") from None
        raise DenoiselabError(f"cannot write the checkpoint of step {step} to {target}: {e.strerror or e}") from None
    for _, old in history(run_dir)[max(1, keep):]:
        old.unlink(missing_ok=True)
    return target


def _publish(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` the same file as ``src``: a hard link (no second copy on disk),
    or a copy where the file system has no links."""
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.link.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            shutil.copyfile(src, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
