"""Data sets. Each builder returns a :class:`TensorData` in the frame the model trains in
(the normalised 2D frame for points; [-1, 1] NCHW for images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import DenoiselabError
from .toy2d import TOY_DATASETS, GaussianMixture, default_mixture, load_toy


@dataclass
class TensorData:
    x: torch.Tensor                       # (N, ...) float32
    y: Optional[torch.Tensor] = None      # (N,) int64 labels, or None
    kind: str = "points"                  # "points" or "images"
    num_classes: int = 0
    class_names: tuple = ()
    hflip: bool = False                   # images: mirror each drawn sample with probability 1/2
    _perm: tuple = field(default=(None, None, None), repr=False, compare=False)
    _u8: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)  # x as bytes (see ``to``)

    def to(self, device) -> "TensorData":
        """The data set held on ``device``, so the trainer never waits for a host copy: the same
        object on the CPU; elsewhere a copy whose images are kept as uint8 (4x less memory, decoded
        per batch on the device) when x is exactly u8 / 127.5 - 1, as decoded files are, else as x."""
        device = torch.device(device)
        return self if device.type == "cpu" else self.stored_on(device)

    def stored_on(self, device) -> "TensorData":
        """A copy held on ``device`` (images as uint8 where that is exact); see ``to``."""
        x, u8 = self.x, None
        if self.kind == "images":
            q = (self.x + 1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
            if torch.equal(_decode(q), self.x):
                u8, x = q.to(device), None
        if u8 is None:
            x = self.x.to(device)
        out = TensorData(x=x if x is not None else torch.empty((0, *self.sample_shape), device=device),
                         y=self.y.to(device) if self.y is not None else None, kind=self.kind,
                         num_classes=self.num_classes, class_names=self.class_names, hflip=self.hflip, _u8=u8)
        return out

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0] if self._u8 is None else self._u8.shape[0]

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The batch of global step ``step``: consecutive slices of per-epoch permutations.

        A pure function of (step, seed), so a resumed run sees exactly the batches an
        uninterrupted one would, with no sampler state to save.
        """
        index = self.batch_index(step, batch_size, seed)
        store = self.x if self._u8 is None else self._u8
        index = index.to(store.device)
        x = store[index] if self._u8 is None else _decode(store[index])
        if self.hflip:
            # The flips are a pure function of (step, seed) too, so resuming stays exact; drawn on
            # the CPU, applied where the images are.
            g = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_777_777)
            flip = (torch.rand(batch_size, generator=g) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, (self.y[index] if self.y is not None else None)

    def batch_index(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices of the batch of ``step``: consecutive slices of per-epoch permutations."""
        n = len(self)
        start = step * batch_size
        idx: list[torch.Tensor] = []
        filled = 0
        while filled < batch_size:
            epoch, pos = divmod(start + filled, n)
            take = self._epoch_perm(epoch, seed)[pos:pos + batch_size - filled]
            idx.append(take)
            filled += len(take)
        return torch.cat(idx)

    def _epoch_perm(self, epoch: int, seed: int) -> torch.Tensor:
        if self._perm[:2] != (epoch, seed):
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._perm = (epoch, seed, torch.randperm(len(self), generator=g))
        return self._perm[2]


def _decode(u8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 [-1, 1], the same operations as the file loaders (bit-equal)."""
    return u8.float().div_(127.5).sub_(1.0)


def _toy_builder(name: str) -> Callable[..., TensorData]:
    def build(options: dict, num: int, seed: int) -> TensorData:
        if options:
            raise DenoiselabError(f"unknown data option(s) {', '.join(sorted(options))}: the 2D set {name!r} "
                                  "takes none (its size is data.num)")
        return TensorData(x=load_toy(name, num, seed), kind="points")

    return build


def _images(x, y, names, options: dict, known: tuple[str, ...] = ()) -> TensorData:
    """Common options of every image set: ``range`` ("-1,1" default, or "0,1" as in CS180) and
    ``flip`` (random horizontal flips at batch time)."""
    unknown = set(options) - {"range", "flip", *known}
    if unknown:
        raise DenoiselabError(f"unknown data option(s) {', '.join(sorted(unknown))}: "
                              f"image sets take range, flip{''.join(', ' + k for k in known)}")
    rng = str(options.get("range", "-1,1")).replace(" ", "")
    if rng == "0,1":
        x = (x + 1) / 2
    elif rng != "-1,1":
        raise DenoiselabError(f"data.range must be -1,1 or 0,1, got {rng!r}")
    return TensorData(x=x, y=y, kind="images", num_classes=len(names) if y is not None else 0,
                      class_names=tuple(names) if y is not None else (), hflip=bool(options.get("flip", False)))


def _mnist(options: dict, num: int, seed: int) -> TensorData:
    from .images import load_mnist5k

    x, y = load_mnist5k()
    return _images(x, y, tuple(str(i) for i in range(10)), options)


def _folder(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import load_image_folder, report_skipped

    if "path" not in options:
        raise DenoiselabError("data set 'folder' needs a path: --set data.path=DIR")
    keys = ("path", "image_size", "channels", "labels", "limit")
    x, y, names, skipped = load_image_folder(options["path"], int(options.get("image_size", 64)),
                                             int(options.get("channels", 3)), options.get("labels", "parent"),
                                             int(options.get("limit", 0)))
    report_skipped(skipped, options["path"])
    return _images(x, y, names, options, keys)


def _idx(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import load_idx

    if "path" not in options:
        raise DenoiselabError("data set 'idx' needs the folder of the IDX files: --set data.path=DIR")
    x, y, names = load_idx(options["path"], options.get("split", "train"), options.get("classes", "digits"))
    return _images(x, y, names, options, ("path", "split", "classes"))


def _cifar10(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import load_cifar10

    if "path" not in options:
        raise DenoiselabError("data set 'cifar10' needs the cifar-10-batches-py folder: --set data.path=DIR")
    x, y, names = load_cifar10(options["path"], options.get("split", "train"))
    return _images(x, y, names, options, ("path", "split"))


def _digits(options: dict, num: int, seed: int) -> TensorData:
    from .images import load_sklearn_digits

    x, y = load_sklearn_digits()
    return _images(x, y, tuple(str(i) for i in range(10)), options)


def _mnist_text(options: dict, num: int, seed: int, encode: Optional[Callable] = None) -> TensorData:
    from .captioned import build_captioned

    return build_captioned(options, num, seed, encode=encode)


# Data sets whose captions need a text encoder (build_dataset hands it in).
CAPTIONED = ("mnist-text",)

DATASETS: dict[str, Callable[..., TensorData]] = {
    **{name: _toy_builder(name) for name in TOY_DATASETS},
    "mnist": _mnist,
    "digits": _digits,
    "folder": _folder,
    "idx": _idx,
    "cifar10": _cifar10,
    "mnist-text": _mnist_text,
}


def build_dataset(name: str, options: dict | None = None, num: int = 0, seed: int = 0,
                  encode: Optional[Callable] = None) -> TensorData:
    """A data set by name. ``encode`` (texts, cache_dir) -> embeddings is the text encoder a
    captioned set needs; it is handed in, since data never import models."""
    if name not in DATASETS:
        raise DenoiselabError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    if name in CAPTIONED:
        return DATASETS[name](dict(options or {}), num, seed, encode=encode)
    return DATASETS[name](dict(options or {}), num, seed)


__all__ = ["DATASETS", "TOY_DATASETS", "GaussianMixture", "TensorData", "build_dataset", "default_mixture", "load_toy"]
