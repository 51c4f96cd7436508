"""The training loop: seeded, resumable, with EMA, LR warm-up and decay, gradient clipping,
atomic checkpoints, a progress bar and ``metrics.jsonl``.

The loop knows nothing about diffusion: it is handed ``objective(net, x0, cond, generator)``.

Exact resume: everything a step depends on is either a function of (step, seed) (the LR
schedule ``lr_at``, the data order ``TensorData.batch``, the EMA decay warm-up) or stored in
every checkpoint (weights, EMA weights, optimizer moments and step counts, the trainer's
generator, torch's global generator that dropout draws from, CUDA's generators), so a run
interrupted any number of times ends on the same bits as an uninterrupted one (on the CPU).
SIGINT/SIGTERM save a checkpoint at the end of the current step; a NaN or inf loss stops the
run before anything is saved.

Devices and processes: the trainer is handed a runtime (``runtime.LocalRuntime`` on one device,
``runtime.AccelerateRuntime`` for data-parallel runs). ``batch_size`` is the global batch of one
optimizer step, the same batch (a function of (step, seed)) whatever the number of processes:
process r of W takes rows [r B / W, (r + 1) B / W) and splits them into ``grad_accum``
micro-batches, so a run may resume on another number of processes or GPUs. The main process
alone keeps the EMA and writes checkpoints, previews and metrics.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..config import TrainConfig
from ..device import autocast, autocast_dtype, place
from ..errors import DenoiselabError
from ..io import atomic_write, log, read_jsonl
from .checkpoint import LATEST, commit_checkpoint, load_latest, remove_stale_temp_files, save_checkpoint
from .ema import EMA
from .guards import NonFiniteWatch, TrainingInterrupted
from .optim import lr_at, make_optimizer
from .runtime import LocalRuntime

Objective = Callable[[torch.nn.Module, torch.Tensor, Optional[torch.Tensor], torch.Generator], torch.Tensor]

CHECKPOINT = LATEST
METRICS = "metrics.jsonl"


def _dropout_rng_state(seed: int, rank: int = 0, step: int = 0) -> torch.Tensor:
    """Start state of torch's global CPU generator during training (dropout draws from it): a
    function of the run's seed alone (and, for the other processes of a data-parallel run, of
    their rank and the step they start at), not of whatever ran before in the process."""
    return torch.Generator().manual_seed(_stream_seed(seed * 1_000_003 + 424_242, rank, step)).get_state()


def _stream_seed(seed: int, rank: int, step: int) -> int:
    """The seed of a process's own stream: ``seed`` itself for the main process of a fresh run
    (so one process draws exactly what it always drew); another stream for each other process,
    restarted at each resume from (seed, rank, step), since a checkpoint holds the main one only."""
    if rank == 0 and step == 0:
        return seed
    return (seed * 0x9E3779B1 + rank * 0x85EBCA77 + step * 0xC2B2AE3D + 1) % (2**63)


class Trainer:
    def __init__(self, net: torch.nn.Module, objective: Objective, data, cfg: TrainConfig, run_dir: Path,
                 config_dict: dict, progress: bool = True,
                 on_preview: Optional[Callable[[int, torch.nn.Module], None]] = None, extra: Optional[dict] = None,
                 log: Callable[[str], None] = log, device=None, runtime=None,
                 moments: Optional[dict[str, torch.Tensor]] = None):
        self.runtime = runtime or LocalRuntime(device or "cpu")
        self.device = self.runtime.device
        rank, world = self.runtime.process_index, self.runtime.num_processes
        accum = max(1, int(getattr(cfg, "grad_accum", 1)))
        if cfg.batch_size % (world * accum):
            raise DenoiselabError(f"batch_size {cfg.batch_size} does not split evenly over {world} process(es) x "
                                  f"{accum} accumulation step(s): use a multiple of {world * accum}")
        self.shares = (rank, world, accum)
        net = place(net, self.device)
        data = data.to(self.device) if hasattr(data, "to") else data
        self.net = net
        self.objective = objective
        self.data = data
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.config_dict = config_dict
        self.progress = progress
        self.on_preview = on_preview
        self.extra = extra or {}
        self.moments = moments  # the data's moments for sampling's start, stored in each checkpoint
        self.log = log
        self.opt = make_optimizer(cfg, net.parameters())
        self.ema = EMA(net, cfg.ema_decay) if cfg.ema_decay > 0 and self.runtime.is_main else None
        self.generator = torch.Generator().manual_seed(_stream_seed(cfg.seed, rank, 0))
        self.torch_rng_state = _dropout_rng_state(cfg.seed, rank)
        self.step = 0
        self.last_saved: Optional[tuple[int, Path]] = None  # (step, path) of the last checkpoint written or loaded
        self.amp_dtype = autocast_dtype(cfg.autocast, self.device)
        # fp16 gradients underflow without loss scaling (Micikevicius et al. 2018); bf16 has float32's range.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        # The objective sees the wrapped (data-parallel) and compiled net; checkpoints and EMA keep the plain module.
        self.train_net = self.runtime.prepare(net)
        if cfg.compile:
            self.train_net = torch.compile(self.train_net)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def sampling_net(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"torch": self.torch_rng_state}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states.update({f"cuda{i}": st for i, st in enumerate(torch.cuda.get_rng_state_all())})
        return states

    def save(self) -> Path:
        def write(path: Path) -> None:
            save_checkpoint(path, model=self.net, ema=self.ema.module if self.ema else None, optimizer=self.opt,
                            config=self.config_dict, step=self.step, rng_state=self.generator.get_state(),
                            rng_states=self._rng_states(), extra=self.extra, moments=self.moments,
                            objective=self._objective_modules())

        path = self.checkpoint_path
        if self.runtime.is_main:  # the processes hold the same weights: one writes them
            path = commit_checkpoint(self.run_dir, self.step, self.cfg.keep_checkpoints, write)
        self.runtime.wait()
        self.last_saved = (self.step, path)
        return path

    def _objective_modules(self) -> dict[str, torch.nn.Module]:
        """Modules the objective keeps between steps (``state_modules``: a distillation's target)."""
        return getattr(self.objective, "state_modules", dict)()

    def _load_objective(self, state: dict[str, torch.Tensor]) -> None:
        for name, module in self._objective_modules().items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def resume(self) -> bool:
        """Continue from the newest whole checkpoint of the run directory (a corrupt one is
        skipped with one line). Returns False, leaving a fresh run, when there is none."""
        if self.runtime.is_main:
            remove_stale_temp_files(self.run_dir)
        self.runtime.wait()
        ck = load_latest(self.run_dir, log=self.log)
        if ck is None:
            return False
        try:
            self.net.load_state_dict(ck["model"])
            if self.ema is not None:
                if ck["ema"] is None:
                    raise DenoiselabError(
                        "checkpoint has no EMA weights but the config asks for EMA: resume with --set train.ema_decay=0"
                    )
                self.ema.module.load_state_dict(ck["ema"])
            self._load_objective(ck.get("objective") or {})
            if ck["optimizer"] is not None:
                self.opt.load_state_dict(ck["optimizer"])
                self._match_layouts()
        except (RuntimeError, ValueError, KeyError) as e:
            raise DenoiselabError(f"checkpoint {ck['path']} does not fit this run's model or optimizer "
                                  f"({str(e).splitlines()[0]}): resume with the run's own config") from None
        if ck["rng_state"] is not None:
            self.generator.set_state(ck["rng_state"])
        rng = ck["rng"]
        if "torch" in rng:
            self.torch_rng_state = rng["torch"]
        rank = self.runtime.process_index
        if rank:  # the checkpoint holds the main process's streams; the others restart their own
            self.generator.manual_seed(_stream_seed(self.cfg.seed, rank, int(ck["step"])))
            self.torch_rng_state = _dropout_rng_state(self.cfg.seed, rank, int(ck["step"]))
        cuda = [rng[f"cuda{i}"] for i in range(len(rng)) if f"cuda{i}" in rng]
        if cuda and torch.cuda.is_available():
            # A run resumed on fewer GPUs than it was saved on takes the states it has GPUs for.
            for i, st in enumerate(cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(st, i)
        self.step = int(ck["step"])
        self.last_saved = (self.step, ck["path"])
        if self.runtime.is_main:
            self._trim_metrics()
        self.runtime.wait()
        return True

    def _match_layouts(self) -> None:
        """Give each loaded optimizer moment its parameter's memory layout: checkpoints store
        tensors contiguous, and a fused optimizer steps through parameter and moments as flat
        memory, so a channels_last parameter with a contiguous moment would pair the wrong
        elements."""
        for group in self.opt.param_groups:
            for p in group["params"]:
                st = self.opt.state.get(p, {})
                for k, v in st.items():
                    if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                        st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

    def _shares(self, x0: torch.Tensor, cond: Optional[torch.Tensor]) -> list[tuple]:
        """This process's rows of the global batch, on its device, in ``grad_accum`` micro-batches:
        process r of W takes rows [r B / W, (r + 1) B / W). One process, no accumulation: the batch."""
        rank, world, accum = self.shares
        n = x0.shape[0] // world
        x0 = x0[rank * n : (rank + 1) * n].to(self.device, non_blocking=True)
        cond = cond[rank * n : (rank + 1) * n].to(self.device, non_blocking=True) if cond is not None else None
        m = n // accum
        return [
            (x0[j * m : (j + 1) * m], cond[j * m : (j + 1) * m] if cond is not None else None) for j in range(accum)
        ]

    def _trim_metrics(self) -> None:
        """Drop the loss lines logged after the checkpoint resumed from (the resumed run logs
        them again) and any line cut short by a kill."""
        path = self.run_dir / METRICS
        if not path.is_file():
            return
        keep = [
            rec
            for rec in read_jsonl(path)
            if not (
                isinstance(rec, dict) and isinstance(rec.get("step"), int) and "loss" in rec and rec["step"] > self.step
            )
        ]
        # Each line was written by json.dumps, so writing the records again gives the same lines.
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in keep)))

    def _last_good(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is {self.last_saved[1]} (step {self.last_saved[0]})"

    def fit(self, until: Optional[int] = None) -> dict:
        """Train to cfg.steps (or stop early at step ``until``, as an interruption would), then checkpoint."""
        cfg = self.cfg
        stop = cfg.steps if until is None else min(until, cfg.steps)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        caught: list[int] = []
        restore = self._catch_signals(caught)
        try:
            # Training draws dropout masks from torch's global generator: swap in the run's own
            # stream for the loop and hand the caller's back afterwards.
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self.torch_rng_state)
                try:
                    last = self._loop(stop, t0, caught)
                finally:
                    self.torch_rng_state = torch.get_rng_state()
        finally:
            restore()
        if self.last_saved is None or self.last_saved[0] != self.step:
            self.save()
        if caught:
            raise TrainingInterrupted(
                f"interrupted by {signal.Signals(caught[0]).name} at step {self.step}: checkpoint saved to "
                f"{self.last_saved[1]}; run the same command with --resume to continue",
                caught[0],
            )
        return {"steps": self.step, "seconds": time.perf_counter() - t0, **last}

    def _catch_signals(self, caught: list[int]) -> Callable[[], None]:
        """SIGINT/SIGTERM end the current step, then the run saves and stops; a second one
        stops at once (the last whole checkpoint stays)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {}

        def handler(signum, frame):
            if caught:
                raise KeyboardInterrupt
            caught.append(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in old.items():
                signal.signal(sig, h)

        return restore

    def _loop(self, stop: int, t0: float, caught: list[int]) -> dict:
        cfg = self.cfg
        main = self.runtime.is_main
        metrics_f = open(self.run_dir / METRICS, "a") if main else None
        self.net.train()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (self.progress and main), desc="train", unit="step",
                   dynamic_ncols=True, mininterval=0.5)
        dev = self.device
        acc, n_acc = torch.zeros((), device=dev), 0
        bad = NonFiniteWatch(dev)
        last: dict = {}
        try:
            while self.step < stop and not caught:
                lr = lr_at(cfg, self.step)
                ld = self._optimizer_step(lr)
                bad.record(ld, self.step)
                acc += ld
                n_acc += 1
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._check_finite(bad)
                    last = self._log_loss(acc / n_acc, lr, t0, metrics_f)
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                    acc, n_acc = torch.zeros((), device=dev), 0
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.steps) or caught:
                    self._check_finite(bad)
                    self.torch_rng_state = torch.get_rng_state()
                    self.save()
                if self.on_preview and main and cfg.preview_every and self.step % cfg.preview_every == 0:
                    with torch.random.fork_rng(devices=[]):  # a preview never moves the run's streams
                        self.on_preview(self.step, self.sampling_net())
                    self.net.train()
                bar.update(1)
            self._check_finite(bad)
        finally:
            bar.close()
            if metrics_f is not None:
                metrics_f.close()
        return last

    def _optimizer_step(self, lr: float) -> torch.Tensor:
        """One optimizer step at learning rate ``lr`` on the step's batch (this process's share, in
        micro-batches), then the EMA update. Returns the step's loss, on the device (no sync)."""
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr
        x0, cond = self.data.batch(self.step, cfg.batch_size, cfg.seed)
        parts = self._shares(x0, cond)
        if hasattr(self.objective, "begin_step"):  # an objective that follows the step (a curriculum)
            self.objective.begin_step(self.step)
        self.opt.zero_grad(set_to_none=True)
        ld = torch.zeros((), device=self.device)
        for j, (xb, cb) in enumerate(parts):
            # Gradients are averaged over the processes once, after the last micro-batch.
            sync = contextlib.nullcontext() if j == len(parts) - 1 else self.runtime.no_sync(self.train_net)
            with sync:
                with autocast(self.device, self.amp_dtype):
                    loss = self.objective(self.train_net, xb, cb, self.generator) / len(parts)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            ld += loss.detach().float()
        if self.scaler:
            self.scaler.unscale_(self.opt)  # clip the true gradients
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip, foreach=True)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        if hasattr(self.objective, "end_step"):  # e.g. a distillation's target network follows the weights
            self.objective.end_step(self.net)
        if self.ema is not None:
            self.ema.update(self.net, self.step)
        return ld

    def _log_loss(self, loss: torch.Tensor, lr: float, t0: float, metrics_f) -> dict:
        """The mean loss since the last log line (over the processes' shares), as a line of metrics.jsonl."""
        last = {
            "step": self.step,
            "loss": self.runtime.mean(loss).item(),
            "lr": lr,
            "time": round(time.perf_counter() - t0, 3),
        }
        if metrics_f is not None:
            metrics_f.write(json.dumps(last) + "\n")
            metrics_f.flush()
        return last

    def _check_finite(self, bad: "NonFiniteWatch") -> None:
        if bad.found():
            raise DenoiselabError(
                f"loss became {float(bad.loss)} at step {int(bad.step)}: training stopped and nothing after it "
                f"was saved; {self._last_good()}; lower the learning rate (--set lr={self.cfg.lr / 10:g}) or clip "
                "gradients (--set grad_clip=1)"
            )
