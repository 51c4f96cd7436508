"""Where and in how many processes the one training loop runs.

The trainer asks a runtime for its device, its share of the work (``num_processes``,
``process_index``), whether it is the main process (the one that keeps the EMA, writes
checkpoints, previews and metrics), and for the few collective steps data-parallel training
needs (wrap the network so gradients are averaged, skip that averaging between accumulated
micro-batches, average a logged loss, wait for the others). ``LocalRuntime`` is one process;
``AccelerateRuntime`` hands each of these to Hugging Face Accelerate, which owns the process
group (NCCL on GPUs, gloo on CPUs), the devices and multi-node launches. The trainer does not
know which one it has.
"""

from __future__ import annotations

import contextlib

import torch


class LocalRuntime:
    """One process on one device."""

    num_processes = 1
    process_index = 0
    is_main = True

    def __init__(self, device="cpu"):
        self.device = torch.device(device)

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        return net

    def no_sync(self, net: torch.nn.Module):
        return contextlib.nullcontext()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def wait(self) -> None:
        pass


class AccelerateRuntime:
    """Data-parallel training through an ``accelerate.Accelerator``: DistributedDataParallel
    around the network (gradients all-reduced in backward), ``no_sync`` between accumulated
    micro-batches, means of logged values over processes."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.device = accelerator.device
        self.num_processes = accelerator.num_processes
        self.process_index = accelerator.process_index
        self.is_main = accelerator.is_main_process

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        # Only the model: the optimizer, autocast and gradient scaling stay the trainer's own, so
        # one process and many run the same code.
        return self.accelerator.prepare_model(net, device_placement=True)

    def no_sync(self, net: torch.nn.Module):
        return self.accelerator.no_sync(net)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value.to(self.device), reduction="mean").cpu()

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()
