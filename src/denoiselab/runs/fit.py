"""Train a run end to end: its data, its trainer (resumed where asked), config.json, the loop, the
pictures, the guidance sweep of a class-conditional run, and the run's page. `denoiselab train` and `denoiselab.train` both come here."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..config import RunConfig
from ..data import TensorData
from ..io import atomic_write, log
from ..viz.report import write_run_report
from .build import build_data, make_trainer, resolve_config
from .load import CONFIG
from .pictures import run_pictures
from .sweeps import training_sweep


def fit_run(cfg: RunConfig, out: Path, *, runtime=None, resume: bool = False, progress: bool = True,
            pictures: bool = True, say: Callable[[str], None] = log) -> tuple[dict, Optional[TensorData]]:
    """Train ``cfg`` into ``out`` (continuing its newest checkpoint with ``resume``) in the
    processes of ``runtime`` (default: one, on the CPU). Returns the trainer's result and the
    data; the main process alone writes config.json, the pictures and the page (data None elsewhere)."""
    out = Path(out)
    is_main = runtime is None or runtime.is_main
    data = build_data(cfg)
    cfg = resolve_config(cfg, data)  # e.g. num_classes -1 -> the data's class count
    parts = {}
    if cfg.distill.method:  # a student: the teacher's weights and the distillation objective
        from .distill import distill_parts

        parts = dict(zip(("net", "objective"), distill_parts(cfg, data, None if runtime is None else runtime.device,
                                                             out=out, log=say if is_main else None,
                                                             progress=is_main and progress)))
    trainer = make_trainer(cfg, out, data, progress=progress, runtime=runtime, **parts)
    if resume:
        say(f"resuming {out} at step {trainer.step}" if trainer.resume() else
            f"{out} holds no checkpoint yet: starting the run")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / CONFIG, lambda tmp: Path(tmp).write_text(cfg.to_json()))
        n_params = sum(p.numel() for p in trainer.net.parameters())
        where = "cpu" if runtime is None else f"{runtime.device}" + (
            f" x {runtime.num_processes} processes" if runtime.num_processes > 1 else "")
        say(f"training {cfg.preset}: {cfg.model.name} ({n_params / 1e6:.2f}M parameters) on {cfg.data.name}, "
            f"{cfg.train.steps} steps, batch {cfg.train.batch_size}, on {where}")
    result = trainer.fit()
    if not is_main:  # pictures and the page: once, by the main process
        return result, None
    say(f"done: step {result['steps']}, loss {result.get('loss', float('nan')):.4f}, "
        f"{result['seconds']:.1f} s; checkpoint {trainer.checkpoint_path}")
    device = None if runtime is None else runtime.device
    if pictures:
        for p in run_pictures(out, data, device=device):
            say(f"wrote {p}")
        sweep = training_sweep(out, data, device=device)
        if sweep is not None:
            say(f"wrote {sweep}")
    say(f"report: {write_run_report(out)}")
    return result, data
