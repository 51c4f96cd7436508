"""Data sets. Each builder returns a :class:`TensorData` in the frame the model trains in
(the normalised 2D frame for points; [-1, 1] NCHW for images)."""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import DenoiselabError
from .tensors import TensorData
from .toy2d import TOY_DATASETS, GaussianMixture, default_mixture, load_toy


def _toy_builder(name: str) -> Callable[..., TensorData]:
    def build(options: dict, num: int, seed: int) -> TensorData:
        if options:
            raise DenoiselabError(f"unknown data option(s) {', '.join(sorted(options))}: the 2D set {name!r} "
                                  "takes none (its size is data.num)")
        return TensorData(x=load_toy(name, num, seed), kind="points")

    return build


def _mnist(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import image_set
    from .images import load_mnist5k

    x, y = load_mnist5k()
    return image_set(x, y, tuple(str(i) for i in range(10)), options)


def _folder(options: dict, num: int, seed: int, encode: Optional[Callable] = None) -> TensorData:
    from .image_files import image_set, load_image_folder, report_skipped

    if "path" not in options:
        raise DenoiselabError("data set 'folder' needs a path: --set data.path=DIR")
    if options.get("label_column") or options.get("caption_column"):
        from .metadata import build_metadata_folder  # labels or captions from metadata.csv / .jsonl

        return build_metadata_folder(options, encode)
    keys = ("path", "image_size", "channels", "labels", "limit")
    x, y, names, skipped = load_image_folder(options["path"], int(options.get("image_size", 64)),
                                             int(options.get("channels", 3)), options.get("labels", "parent"),
                                             int(options.get("limit", 0)))
    report_skipped(skipped, options["path"])
    return image_set(x, y, names, options, keys)


def _idx(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import image_set, load_idx

    if "path" not in options:
        raise DenoiselabError("data set 'idx' needs the folder of the IDX files: --set data.path=DIR")
    x, y, names = load_idx(options["path"], options.get("split", "train"), options.get("classes", "digits"))
    return image_set(x, y, names, options, ("path", "split", "classes"))


def _cifar10(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import image_set, load_cifar10

    if "path" not in options:
        raise DenoiselabError("data set 'cifar10' needs the cifar-10-batches-py folder: --set data.path=DIR")
    x, y, names = load_cifar10(options["path"], options.get("split", "train"))
    return image_set(x, y, names, options, ("path", "split"))


def _digits(options: dict, num: int, seed: int) -> TensorData:
    from .image_files import image_set
    from .images import load_sklearn_digits

    x, y = load_sklearn_digits()
    return image_set(x, y, tuple(str(i) for i in range(10)), options)


def _mnist_text(options: dict, num: int, seed: int, encode: Optional[Callable] = None) -> TensorData:
    from .captioned import build_captioned

    return build_captioned(options, num, seed, encode=encode)


def _emoji(options: dict, num: int, seed: int, encode: Optional[Callable] = None, text: bool = False) -> TensorData:
    from .emoji import build_emoji

    return build_emoji(options, num, seed, encode=encode, text=text)


def _emoji_text(options: dict, num: int, seed: int, encode: Optional[Callable] = None) -> TensorData:
    return _emoji(options, num, seed, encode=encode, text=True)


# Data sets whose captions need a text encoder (build_dataset hands it in; a folder needs it only
# with data.caption_column).
CAPTIONED = ("mnist-text", "emoji-text", "folder")
# Named image sets built at any size (``options.image_size``): a reference takes the samples' size.
SIZED = ("emoji", "emoji-text")

DATASETS: dict[str, Callable[..., TensorData]] = {
    **{name: _toy_builder(name) for name in TOY_DATASETS},
    "mnist": _mnist,
    "digits": _digits,
    "folder": _folder,
    "idx": _idx,
    "cifar10": _cifar10,
    "mnist-text": _mnist_text,
    "emoji": _emoji,
    "emoji-text": _emoji_text,
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


__all__ = ["DATASETS", "SIZED", "TOY_DATASETS", "GaussianMixture", "TensorData", "build_dataset", "default_mixture", "load_toy"]
