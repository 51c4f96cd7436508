"""The training loop: seeded, resumable, with EMA, LR warm-up and decay, gradient clipping,
atomic checkpoints, a progress bar and ``metrics.jsonl``.

The loop knows nothing about diffusion: it is handed ``objective(net, x0, cond, generator)``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..config import TrainConfig
from ..errors import DenoiselabError
from .checkpoint import load_checkpoint, save_checkpoint
from .ema import EMA

Objective = Callable[[torch.nn.Module, torch.Tensor, Optional[torch.Tensor], torch.Generator], torch.Tensor]

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over cfg.warmup steps, then constant, cosine (Loshchilov & Hutter 2017) or
    exponential decay reaching lr * lr_final at the last step."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    p = min(1.0, (step - cfg.warmup) / span)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * p)))
    if cfg.lr_schedule == "exponential":
        return cfg.lr * (max(cfg.lr_final, 1e-12) ** p)
    raise DenoiselabError(f"unknown lr_schedule {cfg.lr_schedule!r}: use constant, cosine or exponential")


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    # fused: one kernel per optimizer step instead of a dozen per parameter group (CPU and CUDA).
    kw = dict(lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, **kw)
    raise DenoiselabError(f"unknown optimizer {cfg.optimizer!r}: use adam or adamw")


class Trainer:
    def __init__(self, net: torch.nn.Module, objective: Objective, data, cfg: TrainConfig, run_dir: Path,
                 config_dict: dict, progress: bool = True,
                 on_preview: Optional[Callable[[int, torch.nn.Module], None]] = None, extra: Optional[dict] = None):
        self.net = net
        self.objective = objective
        self.data = data
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config_dict = config_dict
        self.progress = progress
        self.on_preview = on_preview
        self.extra = extra or {}
        self.opt = make_optimizer(cfg, net.parameters())
        self.ema = EMA(net, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        if cfg.autocast not in ("none", "bf16"):
            raise DenoiselabError(f"unknown autocast {cfg.autocast!r}: use none or bf16")
        # The objective sees the compiled net; checkpoints and EMA keep the plain module.
        self.train_net = torch.compile(net) if cfg.compile else net

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def sampling_net(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, model=self.net, ema=self.ema.module if self.ema else None,
                        optimizer=self.opt, config=self.config_dict, step=self.step,
                        rng_state=self.generator.get_state(), extra=self.extra)

    def resume(self) -> None:
        ck = load_checkpoint(self.checkpoint_path)
        self.net.load_state_dict(ck["model"])
        if self.ema is not None:
            if ck["ema"] is None:
                raise DenoiselabError("checkpoint has no EMA weights but the config asks for EMA: resume with ema_decay=0")
            self.ema.module.load_state_dict(ck["ema"])
        if ck["optimizer"] is not None:
            self.opt.load_state_dict(ck["optimizer"])
        if ck["rng_state"] is not None:
            self.generator.set_state(ck["rng_state"])
        self.step = int(ck["step"])

    def fit(self, until: Optional[int] = None) -> dict:
        """Train to cfg.steps (or stop early at step ``until``, as an interruption would), then checkpoint."""
        cfg = self.cfg
        stop = cfg.steps if until is None else min(until, cfg.steps)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_f = open(self.run_dir / METRICS, "a")
        self.net.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train",
                   unit="step", dynamic_ncols=True, mininterval=0.5)
        acc, n_acc = torch.zeros(()), 0
        t0 = time.perf_counter()
        last = {}
        try:
            while self.step < stop:
                lr = lr_at(cfg, self.step)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                x0, cond = self.data.batch(self.step, cfg.batch_size, cfg.seed)
                with torch.autocast("cuda" if x0.is_cuda else "cpu", dtype=torch.bfloat16,
                                    enabled=cfg.autocast == "bf16"):
                    loss = self.objective(self.train_net, x0, cond, self.generator)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip, foreach=True)
                self.opt.step()
                if self.ema is not None:
                    self.ema.update(self.net, self.step)
                acc += loss.detach()
                n_acc += 1
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    mean_loss = (acc / n_acc).item()
                    if not math.isfinite(mean_loss):
                        raise DenoiselabError(
                            f"loss became {mean_loss} near step {self.step}: lower the learning rate "
                            f"(--set lr={cfg.lr / 10:g}) or clip gradients (--set grad_clip=1); "
                            "the last good checkpoint is kept")
                    last = {"step": self.step, "loss": mean_loss, "lr": lr,
                            "time": round(time.perf_counter() - t0, 3)}
                    metrics_f.write(json.dumps(last) + "\n")
                    metrics_f.flush()
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    acc, n_acc = torch.zeros(()), 0
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    self.save()
                if self.on_preview and cfg.preview_every and self.step % cfg.preview_every == 0:
                    self.on_preview(self.step, self.sampling_net())
                    self.net.train()
                bar.update(1)
        finally:
            bar.close()
            metrics_f.close()
        self.save()
        return {"steps": self.step, "seconds": time.perf_counter() - t0, **last}
