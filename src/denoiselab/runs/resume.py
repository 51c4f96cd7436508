"""The resume policy: which config a `train --resume` continues with.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..config import RunConfig
from ..errors import DenoiselabError
from .load import CONFIG, read_config

if TYPE_CHECKING:
    pass


# Settings a resumed run may take from the command line without becoming another run: how long
# it trains (the LR schedule then spans the new length), how it logs, saves and previews.
RESUME_FREE = ("train.steps", "train.log_every", "train.ckpt_every", "train.keep_checkpoints", "train.preview_every",
               "train.threads", "train.compile", "train.autocast", "train.grad_accum", "sample.")


# Settings that fix what a checkpoint holds: never changed on resume.
RESUME_FIXED = ("model.", "data.", "diffusion.", "distill.", "preset")


def config_diff(a: RunConfig, b: RunConfig) -> dict[str, tuple]:
    """{"section.field": (value in a, value in b)} for every setting that differs."""
    da, db = a.to_dict(), b.to_dict()
    out = {}
    for sec in sorted(set(da) | set(db)):
        va, vb = da.get(sec), db.get(sec)
        if isinstance(va, dict) and isinstance(vb, dict):
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    out[f"{sec}.{k}"] = (va.get(k), vb.get(k))
        elif va != vb:
            out[sec] = (va, vb)
    return out


def resolve_train_config(out: Path, preset: Optional[str], sets: list[str], resume: bool,
                         default_preset: str = "swiss-roll", log=None) -> RunConfig:
    """The config of ``train --out OUT [--preset P] [--set ...] [--resume]``.

    A fresh run is the preset plus --set. With --resume (the command a preemptible job repeats):
    if OUT holds no config yet, the run starts as a fresh one would; otherwise the run's own
    config is kept, and the command line may only
    - restate it (the same --preset and --set as the run was started with),
    - change by --set what a run can change and stay one run (RESUME_FREE, e.g. train.steps to
      train longer), or training settings such as lr (e.g. after a NaN loss), logged as changes.
    A different preset, or a --set of the model, data or diffusion process, is an error naming the
    settings that differ: resume without --preset/--set, or choose another --out.
    """
    from ..config import apply_overrides
    from ..presets import get_preset
    from .validate import validate_config

    out = Path(out)
    stored = read_config(out) if resume and (out / CONFIG).is_file() else None
    if stored is None:
        return validate_config(apply_overrides(get_preset(preset or default_preset), sets))
    via_set = config_diff(stored, apply_overrides(stored, sets))
    asked = apply_overrides(get_preset(preset), sets) if preset else apply_overrides(stored, sets)
    diff = config_diff(stored, asked)
    fixed = sorted((k for k in diff if k.startswith(RESUME_FIXED)), key=lambda k: k != "preset")
    foreign = [k for k in diff if k not in via_set and not k.startswith(RESUME_FREE)]
    bad = fixed or foreign
    if bad:
        shown = "; ".join(f"{k} is {diff[k][0]!r} in the run, {diff[k][1]!r} asked" for k in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DenoiselabError(f"{out} holds a run with another config ({shown}{more}): resume it as it is with "
                              f"`denoiselab train --out {out} --resume`, or choose another --out")
    if diff and log:
        log("resuming with changed settings: " + ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in diff.items()))
    return validate_config(asked)
