"""Where a run computes: the one place that turns ``--device`` into a ``torch.device``.

The device is decided once, at the command line, and then carried by the network and the
tensors: nothing below the face calls ``.cuda()`` or reads an environment variable. The speed
settings a GPU wants (TF32 matmuls, cuDNN autotuning, channels_last convolutions, bf16 autocast)
are switched on here only for CUDA devices, so CPU runs behave exactly as without them.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .errors import DenoiselabError

DEVICE_HELP = ("where to compute: auto (a CUDA GPU if torch sees one, else Apple's mps, else the CPU), "
               "cpu, cuda, cuda:N or mps")


def resolve_device(name: Optional[str] = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> a device that exists on this machine;
    asking for one that is not there is an error naming what torch sees."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DenoiselabError("--device mps: torch sees no Apple GPU (torch.backends.mps.is_available() is "
                                  "False): use --device cpu, or auto to take what there is")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise DenoiselabError(f"--device {name}: a CUDA device is cuda or cuda:N with N a GPU number (cuda:0)")
        if not torch.cuda.is_available():
            built = f"torch {torch.__version__} " + ("with CUDA " + torch.version.cuda if torch.version.cuda
                                                    else "built without CUDA")
            raise DenoiselabError(f"--device {name}: torch sees no CUDA GPU ({built}): use --device cpu, or auto "
                                  "to take what there is")
        count = torch.cuda.device_count()
        i = int(index) if index else torch.cuda.current_device()
        if i >= count:
            raise DenoiselabError(f"--device {name}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                                  f"(cuda:0 to cuda:{count - 1}): choose one of those")
        return torch.device("cuda", i)
    raise DenoiselabError(f"unknown --device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def enable_fast_math(device: torch.device) -> None:
    """CUDA only: TF32 tensor cores for float32 matmuls and convolutions (10 mantissa bits, the
    precision bf16 autocast already accepts) and cuDNN's autotuner (a run's shapes are fixed).
    Process-wide switches, so they are thrown once, at the face."""
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")


def place(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a network to ``device``; on CUDA, UNets switch to channels_last, the layout tensor-core
    convolutions read without transposes (the weights are the same numbers: checkpoints do not change)."""
    device = torch.device(device)
    if device.type == "cuda" and hasattr(net, "use_channels_last"):
        net.use_channels_last = True
        net.to(memory_format=torch.channels_last)
    return net.to(device)


def module_device(obj, default: Optional[torch.device] = None) -> torch.device:
    """The device a network computes on, found through a denoiser (``.net``) and any wrappers
    around it (guidance and edit wrappers hold theirs as ``.inner``); ``default`` (the CPU if None)
    for closed-form denoisers and plain callables, which have no parameters."""
    for _ in range(32):
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                return p.device
            for b in obj.buffers():
                return b.device
            break
        # The instance dict, not getattr: wrappers refuse to hand out their inner ``net``.
        attrs = getattr(obj, "__dict__", {})
        obj = attrs.get("net", attrs.get("inner"))
        if obj is None:
            break
    return torch.device("cpu") if default is None else torch.device(default)


AUTOCAST_MODES = ("auto", "none", "bf16", "fp16")  # train.autocast, sample.precision, --precision


def autocast_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``train.autocast`` on ``device`` (None: full float32).

    ``auto``: bf16 on a CUDA GPU that has it, fp16 (with a gradient scaler, since fp16 gradients
    underflow) on older GPUs, none on the CPU, so CPU runs are unchanged. ``bf16``: bf16
    everywhere (the tuned 2D presets use it on the CPU too); ``fp16``: CUDA only."""
    device = torch.device(device)
    if mode == "none":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise DenoiselabError(f"fp16 autocast (train.autocast, sample --precision) needs a CUDA GPU, not {device}: use bf16 or auto")
        return torch.float16
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    raise DenoiselabError(f"unknown autocast {mode!r}: use auto, none, bf16 or fp16")


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """The forward pass's autocast context (a no-op for dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


# Images per forward pass when the command line names none. On a CPU a batch of 1000 mnist
# images runs 23% slower per image than chunks of 125-500 (39.4 s against 30.5 s for
# `sample --num 1000 --steps 40` on a 2-core CPU): the activations no longer fit the cache.
# Points (a small MLP) and GPUs want one large batch.
CPU_IMAGE_BATCH = 256
LARGE_BATCH = 4096


def sampling_batch_size(kind: str, device: torch.device) -> int:
    """Default samples per forward pass for data of ``kind`` ("images" or "points") on ``device``;
    batching never changes which sample a seed gives (rng.SampleNoise)."""
    return CPU_IMAGE_BATCH if kind == "images" and torch.device(device).type == "cpu" else LARGE_BATCH
