"""Image data a user has on disk: a folder of images, MNIST/Fashion-MNIST IDX files, CIFAR-10
python batches. Every loader returns float32 NCHW images in [-1, 1], int64 labels (or None)
and the class names.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DenoiselabError
from .tensors import TensorData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _to_unit_range(u8: np.ndarray) -> torch.Tensor:
    """uint8 0..255 -> float32 [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(u8)).float().div_(127.5).sub_(1.0)


def image_set(x: torch.Tensor, y: Optional[torch.Tensor], names, options: dict, known: tuple[str, ...] = ()) -> TensorData:
    """An image data set with the options every image set takes: ``range`` ("-1,1" default, or "0,1"
    as in CS180) and ``flip`` (random horizontal flips at batch time); ``known`` are the set's own."""
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


# -- Image folders ------------------------------------------------------------------------

def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as (channels, size, size) uint8 (see ``image_io.fit_picture``)."""
    from PIL import Image

    from ..image_io import fit_picture

    with Image.open(path) as im:
        im.load()
        return fit_picture(im, size, channels)


def load_image_folder(path, image_size: int = 64, channels: int = 3, labels: str = "parent",
                      limit: int = 0) -> tuple[torch.Tensor, Optional[torch.Tensor], tuple[str, ...], list[tuple[str, str]]]:
    """Every image under ``path`` (recursive, sorted, png/jpg/webp/bmp/gif) as (N, C, S, S) in [-1, 1].

    ``labels``: "parent" names the class by each file's folder, "top" by its first-level
    sub-folder (``afhq/cat/...`` and ``afhq/cat/more/...`` are both "cat"), "none" drops labels;
    files directly in ``path`` get no label, and if no file sits in a sub-folder the set is
    unlabelled. Unreadable files are skipped and returned as (name, reason) so the caller can
    report them; a data set must not crash a long run at step 40,000 because of one bad file.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DenoiselabError(f"image folder not found: {root} (pass an existing directory with --set data.path=DIR)")
    if channels not in (1, 3):
        raise DenoiselabError(f"image folder: channels must be 1 or 3, got {channels}")
    if labels not in ("parent", "top", "none"):
        raise DenoiselabError(f"image folder: labels must be parent, top or none, got {labels!r}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[:limit]
    images, names, skipped = [], [], []
    for f in files:
        try:
            images.append(_read_image(f, image_size, channels))
        except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
            skipped.append((str(f.relative_to(root)), f"{type(e).__name__}: {e}"))
            continue
        rel = f.relative_to(root).parts[:-1]
        names.append("" if not rel or labels == "none" else (rel[-1] if labels == "parent" else rel[0]))
    if not images:
        raise DenoiselabError(f"no readable images (png, jpg, webp) under {root}"
                              + (f"; {len(skipped)} unreadable, e.g. {skipped[0][0]}" if skipped else ""))
    x = _to_unit_range(np.stack(images))
    classes = tuple(sorted({n for n in names if n}))
    y = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        # Files without a folder label get -1, which conditional models read as "no label".
        y = torch.tensor([index.get(n, -1) for n in names], dtype=torch.int64)
    return x, y, classes, skipped


def report_skipped(skipped: list[tuple[str, str]], root) -> None:
    for name, reason in skipped:
        warnings.warn(f"skipped unreadable image {Path(root) / name}: {reason}", stacklevel=2)


# -- MNIST / Fashion-MNIST IDX files -------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """One IDX file (LeCun et al.'s format: 2 zero bytes, a type byte, a rank byte, big-endian
    int32 dims, then the data), optionally gzip-compressed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DenoiselabError(f"{path} is not an IDX file (bad magic number {head.hex()})")
            rank = head[3]
            dims = struct.unpack(f">{rank}I", f.read(4 * rank))
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            data = np.frombuffer(f.read(), dtype=dtype)
    except OSError as e:
        raise DenoiselabError(f"cannot read IDX file {path}: {e}") from None
    if data.size != int(np.prod(dims)):
        raise DenoiselabError(f"{path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _find(root: Path, stems: tuple[str, ...]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = root / (stem + suffix)
            if p.is_file():
                return p
    raise DenoiselabError(f"no {stems[0]}[.gz] in {root}: point data.path at the folder holding the IDX files")


def load_idx(path, split: str = "train", classes: str = "digits") -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """MNIST or Fashion-MNIST from the four IDX files in ``path`` (``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte``, or ``t10k-...`` for split "test"; gzipped or not)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DenoiselabError(f"IDX folder not found: {root} (pass --set data.path=DIR)")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DenoiselabError(f"IDX split must be train or test, got {split!r}")
    images = read_idx(_find(root, (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte")))
    labels = read_idx(_find(root, (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte")))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DenoiselabError(f"IDX files in {root} do not match: images {images.shape}, labels {labels.shape}")
    names = FASHION_CLASSES if classes == "fashion" else tuple(str(i) for i in range(10))
    return _to_unit_range(images.astype(np.uint8)[:, None]), torch.from_numpy(labels.astype(np.int64)), names


# -- CIFAR-10 python batches -----------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch is a pickle, and a pickle
    from disk must not be able to run arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as e:
        raise DenoiselabError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DenoiselabError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """CIFAR-10 from the ``cifar-10-batches-py`` folder (data_batch_1..5 or test_batch)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DenoiselabError(f"CIFAR-10 folder not found: {root} (pass --set data.path=DIR/cifar-10-batches-py)")
    if split == "train":
        files = sorted(root.glob("data_batch_*"))
    elif split == "test":
        files = [root / "test_batch"] if (root / "test_batch").is_file() else []
    else:
        raise DenoiselabError(f"CIFAR-10 split must be train or test, got {split!r}")
    if not files:
        raise DenoiselabError(f"no CIFAR-10 {split} batches (data_batch_N / test_batch) in {root}")
    parts = [_read_cifar_batch(f) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _to_unit_range(x), torch.from_numpy(y), CIFAR10_CLASSES
