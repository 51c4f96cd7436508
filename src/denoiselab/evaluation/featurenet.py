"""The domain feature network: a small CNN classifier trained from scratch on the data set itself,
its penultimate layer used as features (the KAIST CS479 approach to FID on small data sets).

Fully offline. Trained once per data set and cached under the data set's hash, so every score
computed for that data set uses the same features. Its held-out accuracy is stored with it and
printed with every score: features of a classifier that cannot tell the classes apart cannot
tell a good generator from a bad one.

Why a classifier trained on the same images rather than Inception: Inception-v3 needs weights
from the internet and sees 28x28 digits through a 299x299 ImageNet lens; a domain network is
the feature space in which the data's own classes separate. Its numbers are comparable across
runs on one data set, never with papers (use ``--inception-weights`` for those).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DenoiselabError
from .frechet import single_thread

FEATURENET_VERSION = 1   # bump when the architecture or the training recipe changes: invalidates caches




def data_hash(x: torch.Tensor, y: Optional[torch.Tensor] = None) -> str:
    """sha256 of the images (float32, shape included) and labels: the cache key of a data set."""
    h = hashlib.sha256()
    h.update(json.dumps(list(x.shape)).encode())
    h.update(x.detach().to(torch.float32).contiguous().numpy().tobytes())
    if y is not None:
        h.update(y.detach().to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FeatureNetConfig:
    feature_dim: int = 128
    widths: tuple = (16, 32, 64)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    heldout: float = 0.2       # fraction of the data never trained on; accuracy is measured there
    seed: int = 0
    background: float = -1.0   # the images' background value: what a warp pads with (emoji: white, 1)
    # Class weights in the loss, (N / N_c) ** power (0: none). A data set whose classes differ
    # in size many times over sets it, or the network never learns to read its small classes.
    class_weight_power: float = 0.0


def config_key(cfg: FeatureNetConfig) -> dict:
    """The config as it enters a cache key; ``background`` and ``class_weight_power`` only where
    they are not the default, so the caches of sets from before they existed stay valid."""
    d = asdict(cfg)
    for name, default in (("background", -1.0), ("class_weight_power", 0.0)):
        if d[name] == default:
            del d[name]
    return d


class FeatureCNN(nn.Module):
    """conv-BN-ReLU stages at full, 1/2 and 1/4 resolution, pooled to 2x2, then a linear layer to
    the features and one to the logits. Works for any input size >= 8 (MNIST 28, digits 8, CIFAR 32).
    One conv at full resolution: there it costs the most and sees only strokes."""

    def __init__(self, in_channels: int, num_classes: int, feature_dim: int = 128, widths: tuple = (16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(block(in_channels, w1), nn.MaxPool2d(2),
                                  block(w1, w2), block(w2, w2), nn.MaxPool2d(2),
                                  block(w2, w3), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(w3 * 4, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))


def augment(x: torch.Tensor, g: torch.Generator, background: float = -1.0) -> torch.Tensor:
    """Random small affine warps (rotation +-10 deg, scale 0.9-1.1, shift +-10%): digits stay
    digits, and 4,000 images behave like many more. Uncovered pixels get ``background``."""
    n = len(x)
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.2
    cos, sin = ang.cos() / scale, ang.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Pad with the background (-1 for digits, 1 for emoji on white), not with 0 (mid-grey).
    return F.grid_sample(x - background, grid, padding_mode="zeros", align_corners=False) + background


def split_indices(n: int, heldout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * heldout))
    return perm[k:], perm[:k]


@torch.no_grad()
def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    hits = sum(int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return hits / max(len(x), 1)


def train_feature_net(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: FeatureNetConfig = FeatureNetConfig(),
                      log: Optional[Callable[[str], None]] = None,
                      heldout: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> tuple[FeatureCNN, dict]:
    """Train on (1 - heldout) of the data with augmentation, AdamW and a one-cycle schedule;
    returns the network (eval mode) and its info (held-out accuracy, seconds, sizes). A data set
    with its own held-out split (``heldout`` = (images, labels): emoji, split by base emoji) is
    trained on whole and measured there."""
    if y is None or num_classes < 2:
        raise DenoiselabError("the domain feature network needs a labelled data set (>= 2 classes): "
                              "use labelled images, or pass --inception-weights PATH")
    if x.shape[-1] < 8 or x.shape[-2] < 8:
        raise DenoiselabError(f"images of {tuple(x.shape[-2:])} are too small for the feature network (>= 8x8)")
    torch.manual_seed(cfg.seed)  # weight init; the data order and augmentations use ``g`` below
    g = torch.Generator().manual_seed(cfg.seed)
    if heldout is None:
        tr, ho = split_indices(len(x), cfg.heldout, cfg.seed)
        (x_tr, y_tr), (x_ho, y_ho) = (x[tr], y[tr]), (x[ho], y[ho])
    else:
        (x_tr, y_tr), (x_ho, y_ho) = (x, y), heldout
    net = FeatureCNN(x.shape[1], num_classes, cfg.feature_dim, tuple(cfg.widths))
    t0 = time.perf_counter()
    with single_thread():
        _fit(net, x_tr, y_tr, x_ho, y_ho, cfg, g, log)
    net.eval()
    info = {"heldout_accuracy": _accuracy(net, x_ho, y_ho), "train_accuracy": _accuracy(net, x_tr, y_tr),
            "num_train": len(x_tr), "num_heldout": len(x_ho), "seconds": time.perf_counter() - t0,
            "num_classes": num_classes, "in_channels": x.shape[1], "config": asdict(cfg), "version": FEATURENET_VERSION}
    return net, info


def class_weights(y: torch.Tensor, num_classes: int, power: float) -> torch.Tensor:
    """Loss weight of each class, proportional to (N / N_c) ** ``power`` and scaled so that the
    mean weight over the training images is 1 (the loss keeps its scale): power 0 weighs every
    image alike, 1 makes every class weigh the same in total, 1/2 lies between. A class with no
    images gets weight 0."""
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    w = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1)) ** power, torch.zeros_like(counts))
    return (w * counts.sum() / (w * counts).sum()).to(torch.float32)


def _fit(net, x, y, x_ho, y_ho, cfg: FeatureNetConfig, g: torch.Generator, log) -> None:
    # One thread: small convolutions gain little from a second one, and on a shared machine the
    # second thread's spin-waits cost more than it adds (measured: 0.09 s of CPU per step with
    # one thread, 0.50 s with two, on the busy 2-core machine).
    steps_per_epoch = max(1, math.ceil(len(x) / cfg.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    weight = class_weights(y, int(net.head.out_features), cfg.class_weight_power) if cfg.class_weight_power else None
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.cross_entropy(net(augment(x[idx], g, cfg.background)), y[idx], weight=weight, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log and ((epoch + 1) % 3 == 0 or epoch == 0):
            log(f"feature network epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.3f}, "
                f"held-out accuracy {_accuracy(net, x_ho, y_ho):.4f}")


def _cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"featurenet-v{FEATURENET_VERSION}-{key[:24]}.safetensors"


def load_or_train_feature_net(x: torch.Tensor, y: torch.Tensor, num_classes: int, cache_dir: Path,
                              cfg: FeatureNetConfig = FeatureNetConfig(),
                              log: Optional[Callable[[str], None]] = None,
                              heldout: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> tuple[FeatureCNN, dict]:
    """The cached network for this data set (keyed by data hash, config and the held-out split
    when the set brings its own), trained on a miss."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from ..io import atomic_write

    held = "" if heldout is None else "heldout-" + data_hash(*heldout)
    key = hashlib.sha256((data_hash(x, y) + json.dumps(config_key(cfg), sort_keys=True) + held).encode()).hexdigest()
    path = _cache_path(cache_dir, key)
    if path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                info = json.loads((f.metadata() or {})["info"])
            net = FeatureCNN(info["in_channels"], info["num_classes"], cfg.feature_dim, tuple(cfg.widths))
            net.load_state_dict(load_file(str(path)))
            net.eval()
            info["cached"] = str(path)
            return net, info
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
            if log:
                log(f"feature network cache {path} is unreadable: retraining")
    if log:
        log(f"training the feature network on {len(x)} images (once; cached in {path.parent})")
    net, info = train_feature_net(x, y, num_classes, cfg, log, heldout)
    info["cache_key"] = key
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"info": json.dumps(info)}))
    return net, dict(info, cached=str(path))
