"""Scoring image samples: features from the domain network (or FID Inception), reference
features cached per data set, every score printed beside its floor, conditional accuracy.

The floor. The reference is split once (fixed seed) into two disjoint halves A and B. Samples
are scored against B; the floor is the same metric for real images of A against B, with as
many images of A as there are samples (when A has enough). Same reference, same sample count,
same estimator: the floor is the score of a perfect generator, and its bias is the bias of
the score. A score is read against it, never against 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..data import TensorData
from ..errors import DenoiselabError
from ..io import read_cache
from .feature_metrics import evaluate_features
from .featurenet import FeatureNetConfig, data_hash, load_or_train_feature_net

SPLIT_SEED = 1234


@dataclass
class FeatureExtractor:
    name: str                                   # "featurenet" or "inception"
    ident: str                                  # identity for caches: weights hash or data-set key
    embed: Callable[[torch.Tensor], torch.Tensor]
    classify: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    info: dict = field(default_factory=dict)
    batch: int = 250                            # images per forward pass (memory only)


def _on_device(fn: Callable[[torch.Tensor], torch.Tensor], device) -> Callable[[torch.Tensor], torch.Tensor]:
    """fn run on ``device`` (images in, features out, both on the CPU); fn itself for the CPU."""
    if device is None or torch.device(device).type == "cpu":
        return fn
    return lambda x: fn(x.to(device)).float().cpu()


def domain_extractor(data: TensorData, cache_dir: Path, cfg: FeatureNetConfig = FeatureNetConfig(),
                     log: Optional[Callable[[str], None]] = None, device=None) -> FeatureExtractor:
    """The domain network of ``data``. A set that brings its own held-out split (``data.heldout``:
    emoji, split by base emoji, so no skin-tone variant of a trained emoji is measured) is trained
    on whole and measured there; one that needs another recipe names it (``data.reader``, a dict
    of FeatureNetConfig fields: emoji's pads its warps with white and trains longer, with class
    weights)."""
    held = getattr(data, "heldout", None)
    cfg = dataclasses.replace(cfg, **dict(getattr(data, "reader", None) or {}))
    net, info = load_or_train_feature_net(data.x, data.y, data.num_classes, cache_dir, cfg, log,
                                          heldout=None if held is None else (held.x, held.y))
    if device is not None:
        net = net.to(device)
    return FeatureExtractor("featurenet", "featurenet-" + info["cache_key"][:24], _on_device(net.embed, device),
                            _on_device(net, device), info)


def inception_extractor(weights: Path, quantize: bool = False, device=None) -> FeatureExtractor:
    from .inception import load_fid_inception

    net = load_fid_inception(weights, quantize=quantize)
    if device is not None:
        net = net.to(device)
    h = hashlib.sha256(Path(weights).expanduser().read_bytes()).hexdigest()
    # 50 images per pass, as pytorch-fid: at 299 x 299 the activations of 250 take several GB.
    return FeatureExtractor("inception", f"inception-{h[:24]}{'-q' if quantize else ''}", _on_device(net, device),
                            None, {"weights": str(weights), "sha256": h}, batch=50)


@torch.no_grad()
def extract(extractor: FeatureExtractor, x: torch.Tensor) -> torch.Tensor:
    b = extractor.batch
    out = torch.cat([extractor.embed(x[i:i + b]).float() for i in range(0, len(x), b)])
    if not torch.isfinite(out).all():
        raise DenoiselabError(f"{extractor.name} features contain NaN or inf: check the samples and the feature network")
    return out


def check_images(x: torch.Tensor, ref: TensorData) -> None:
    if x.ndim != 4:
        raise DenoiselabError(f"image samples must be (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise DenoiselabError("no samples to evaluate: the array is empty")
    if tuple(x.shape[1:]) != tuple(ref.x.shape[1:]):
        raise DenoiselabError(f"samples of shape {tuple(x.shape[1:])} do not match the reference images "
                              f"{tuple(ref.x.shape[1:])}: evaluate against the data set the model was trained on")
    if not torch.isfinite(x).all():
        raise DenoiselabError("samples contain NaN or inf: the model or sampler diverged")


def reference_features(extractor: FeatureExtractor, ref: TensorData, cache_dir: Optional[Path],
                       log: Optional[Callable[[str], None]] = None) -> torch.Tensor:
    """Features of every reference image, cached as .npy under (data hash, extractor identity)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"reffeat-{data_hash(ref.x, ref.y)[:24]}-{extractor.ident}.npy"
        cached = read_cache(path)
        if cached is not None and cached.ndim == 2 and len(cached) == len(ref.x):
            return torch.from_numpy(cached)
    if log:
        log(f"extracting {extractor.name} features of {len(ref.x)} reference images")
    f = extract(extractor, ref.x)
    if path is not None:
        from ..io import atomic_save_npy

        atomic_save_npy(path, f.numpy())
    return f


def reference_halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[: n // 2], perm[n // 2:]


@torch.no_grad()
def conditional_accuracy(classify: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, labels,
                         batch: int = 500) -> dict:
    """Fraction of class-conditional samples that the classifier assigns to the asked class
    (``value``), per class, and the mean over classes (``balanced``: each class counts once, however
    many samples asked for it)."""
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long().reshape(-1)
    if len(labels) != len(x):
        raise DenoiselabError(f"{len(labels)} labels for {len(x)} samples: give one intended class per sample")
    pred = torch.cat([classify(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    hit = pred == labels
    per_class = {int(c): float(hit[labels == c].double().mean()) for c in labels.unique()}
    return {"value": float(hit.double().mean()), "balanced": float(np.mean(list(per_class.values()))),
            "per_class": per_class}


def evaluate_images(x: torch.Tensor, ref: TensorData, ref_name: str, extractor: FeatureExtractor, *,
                    cache_dir: Optional[Path] = None, labels=None, classifier: Optional[FeatureExtractor] = None,
                    bootstrap: int = 20, seed: int = 0, log: Optional[Callable[[str], None]] = None) -> dict:
    """FID, KID, precision, recall (with intervals and floors) of image samples ``x`` against ``ref``;
    with ``labels`` (intended class per sample) also the conditional accuracy under ``classifier``
    (a domain extractor; defaults to ``extractor`` when that one classifies)."""
    check_images(x, ref)
    if len(ref.x) < 10:
        raise DenoiselabError(f"the reference holds {len(ref.x)} images: too few to split for a floor")
    fr = reference_features(extractor, ref, cache_dir, log)
    half_a, half_b = reference_halves(len(fr))
    fx = extract(extractor, x)
    res = evaluate_features(fx, fr[half_b], bootstrap=bootstrap, seed=seed)
    n_floor = min(len(x), len(half_a))
    floor = evaluate_features(fr[half_a[:n_floor]], fr[half_b], bootstrap=0, seed=seed)
    for name, m in res["metrics"].items():
        m["floor"] = floor["metrics"][name]["value"]
    if n_floor < len(x):
        res["warnings"].append(f"the floor uses {n_floor} real images (half the reference), fewer than the "
                               f"{len(x)} samples: FID and KID floors are a little high")
    res.update({"ref": ref_name, "kind": "images", "num_floor": n_floor,
                "features": {"network": extractor.name, "dim": int(fx.shape[1]),
                             **{k: v for k, v in extractor.info.items() if k in ("heldout_accuracy", "sha256", "seconds")}}})
    if labels is not None:
        clf = classifier or extractor
        if clf.classify is None:
            raise DenoiselabError("conditional accuracy needs the domain feature network (a classifier)")
        acc = conditional_accuracy(clf.classify, x, labels)
        acc["floor"] = clf.info.get("heldout_accuracy", float("nan"))
        res["metrics"]["class accuracy"] = acc
    return res
