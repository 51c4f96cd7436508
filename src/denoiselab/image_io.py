"""Reading a user's pictures, arrays and masks into a model's frame (any layer may import this).

A picture (PNG/JPEG/... of any size and mode) is composited on white if it has transparency,
converted to the model's channels (L or RGB), its shorter side resized to the model's size
(Lanczos) and centre-cropped, then mapped from 0..255 to the model's value range ([-1, 1] for
every image set, [0, 1] for the CS180 presets). An ``.npy`` is taken as it is, in the data's
frame: (N, C, H, W), (C, H, W) or, for one channel, (H, W). A mask is 1 where the input is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .errors import DenoiselabError
from .io import load_npy

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def fit_picture(im, size: int, channels: int, resample=None) -> np.ndarray:
    """A PIL image as (channels, size, size) uint8: transparency on white, shorter side resized to
    ``size`` (Lanczos unless ``resample`` is given), centre-cropped."""
    from PIL import Image

    if resample is None:
        resample = Image.Resampling.LANCZOS
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("RGB" if channels == 3 else "L")
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _open_picture(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DenoiselabError(f"cannot read {path} as an image ({type(e).__name__}): pass a PNG/JPEG or an .npy") from None


def as_nchw(arr: np.ndarray, shape: Sequence[int], path: Path, what: str) -> torch.Tensor:
    """(N, C, H, W), (C, H, W) or (H, W) -> (N, C, H, W) float32 with the model's (C, H, W); ``what``
    and ``path`` name the array in the error."""
    c, h, w = shape
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or tuple(arr.shape[2:]) != (h, w):
        raise DenoiselabError(f"{what} {path} has shape {tuple(arr.shape)}: the model needs ({c}, {h}, {w}) "
                              f"images, as (N, {c}, {h}, {w}), ({c}, {h}, {w}) or ({h}, {w}) for one channel")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)


def read_images(paths: Sequence[str | Path] | str | Path, shape: Sequence[int],
                value_range: tuple[float, float] = (-1.0, 1.0), negate: bool = False) -> torch.Tensor:
    """Images for a model whose samples have ``shape`` = (C, H, W), as one (N, C, H, W) float32 tensor.

    Pictures are converted (see the module docstring); ``.npy`` arrays must already be in the
    data's frame. ``negate`` swaps dark and light in pictures, for drawings in dark ink on white
    paper given to a model of light digits on black (MNIST).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    c, h, w = (int(v) for v in shape)
    lo, hi = value_range
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DenoiselabError(f"input image not found: {path}")
        if path.suffix.lower() == ".npy":
            x = as_nchw(load_npy(path, "input"), (c, h, w), path, "input")
            if x.shape[1] != c:
                raise DenoiselabError(f"input {path} has {x.shape[1]} channels: the model needs {c}")
        else:
            if c not in (1, 3) or h != w:
                raise DenoiselabError(f"pictures can be read only for square models with 1 or 3 channels (this one "
                                      f"takes {tuple(shape)}): pass an .npy in the data's frame")
            u8 = fit_picture(_open_picture(path), h, c)
            if negate:
                u8 = 255 - u8
            x = torch.from_numpy(np.array(u8, dtype=np.float32))[None] / 255.0 * (hi - lo) + lo
        out.append(x)
    return torch.cat(out)


def read_mask(path: str | Path, shape: Sequence[int], num: int, source_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """A binary keep-mask (1 = keep the input) as (num or 1, 1 or C, H, W) float32 with values in {0, 1}.

    PNG: grayscale after conversion, every pixel 0 or 255 (anything else is refused, so an
    anti-aliased mask does not silently become a soft one), of the model's size or of the input
    picture's size ``source_size`` (then resized and cropped as the picture was, nearest).
    ``.npy``: (H, W), (1|C, H, W) or (1|N, 1|C, H, W) of 0s and 1s (or booleans).
    """
    from PIL import Image

    c, h, w = (int(v) for v in shape)
    path = Path(path)
    if not path.is_file():
        raise DenoiselabError(f"mask not found: {path}")
    if path.suffix.lower() == ".npy":
        m = as_nchw(load_npy(path, "mask", booleans=True).astype(np.float32), (c, h, w), path, "mask")
        if m.shape[1] not in (1, c):
            raise DenoiselabError(f"mask {path} has {m.shape[1]} channels: give 1 (all channels) or {c}")
        if m.shape[0] not in (1, num):
            raise DenoiselabError(f"mask {path} holds {m.shape[0]} masks for {num} images: give one, or one per image")
        bad = ~((m == 0) | (m == 1))
        if bad.any():
            raise DenoiselabError(f"mask {path} is not binary ({int(bad.sum())} values other than 0 and 1): "
                                  "threshold it, 1 = keep")
        return m
    im = _open_picture(path)
    if im.size not in ((w, h),) + ((tuple(source_size),) if source_size else ()):
        sizes = f"{w}x{h}" + (f" or the input's {source_size[0]}x{source_size[1]}" if source_size else "")
        raise DenoiselabError(f"mask {path} is {im.size[0]}x{im.size[1]}: it must be {sizes}")
    gray = np.asarray(im.convert("L"))
    if not np.isin(gray, (0, 255)).all():
        raise DenoiselabError(f"mask {path} is not binary (grey levels other than black and white): "
                              "save it with pure black (0, fill) and white (255, keep)")
    u8 = fit_picture(Image.fromarray(gray), h, 1, resample=Image.Resampling.NEAREST)
    return torch.from_numpy((u8 > 127).astype(np.float32))[None]


def picture_size(path: str | Path) -> Optional[tuple[int, int]]:
    """(width, height) of a picture file, None for an .npy."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return None
    return _open_picture(path).size


def mask_box(box: str, shape: Sequence[int]) -> torch.Tensor:
    """``x0,y0,x1,y1`` (pixels, x1 and y1 exclusive) -> a (1, 1, H, W) keep-mask that is 0 inside the box."""
    _, h, w = (int(v) for v in shape)
    try:
        x0, y0, x1, y1 = (int(v) for v in box.split(","))
    except ValueError:
        raise DenoiselabError(f"--mask-box {box!r}: write four integers x0,y0,x1,y1 (pixels; x1, y1 exclusive)") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise DenoiselabError(f"--mask-box {box!r} is empty or leaves the {w}x{h} image: need 0 <= x0 < x1 <= {w}, "
                              f"0 <= y0 < y1 <= {h}")
    m = torch.ones(1, 1, h, w)
    m[..., y0:y1, x0:x1] = 0
    return m
