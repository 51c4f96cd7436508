"""Captioned colour MNIST, built on the fly from the MNIST-5k digits: each digit drawn in one of
seven colours on a black background, with a caption that names it ("a red seven", "the digit 3
in green", ...), for text-to-image training (the DDPM/CFG assignment's text bonus).

Glossary: ``a`` the grey stroke intensity in [0, 1] of a digit; ``rgb`` a palette colour whose
largest channel is 1, so the image is ``x = 2 a rgb - 1`` in [-1, 1] (background -1) and the
intensity comes back exactly as ``max_c (x + 1) / 2`` (what :func:`grayscale` returns). Every
palette colour sits on its own 60-degree hue sector (white has none), so a sample's colour can be
read back from the mean hue of its strokes (:func:`measure_colour`).

Training stays a pure function of (step, seed): the batch's images come from the per-epoch
permutation of :class:`TensorData`, and each sample's colour and caption are drawn from a
generator seeded by (seed, step). Every distinct caption is embedded once (cached on disk), and a
batch's condition is the (N, 384) float tensor of its captions' embeddings. ``x``/``y`` hold a
fixed colouring of the digits (colour drawn from the data seed), for pictures and references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..errors import DenoiselabError
from .tensors import TensorData

# name -> RGB with max channel 1 (so grayscale() recovers the stroke) and hue on a 60-degree sector.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "yellow": (1.0, 1.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "cyan": (0.0, 1.0, 1.0),
    "blue": (0.0, 0.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}
COLOURS = tuple(PALETTE)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Captions that name both the digit and the colour ({c} colour, {d} numeral, {w} digit word).
FULL_TEMPLATES = (
    "a {c} {w}",
    "a {c} {d}",
    "the digit {d} in {c}",
    "the number {w} in {c}",
    "a {w} written in {c}",
    "{c} {d}",
    "a handwritten {c} {w}",
    "the digit {w}, coloured {c}",
    "a {c} digit {d}",
    "a {w} in {c} on a dark background",
)
# Captions that name only one of them, so that "a 7" or "something red" are prompts it knows too.
DIGIT_TEMPLATES = ("a {w}", "the digit {d}")
COLOUR_TEMPLATES = ("a {c} digit", "something {c}")
# A few prompts for pictures (``plot guidance`` of a text run): different digits and colours.
DEMO_PROMPTS = ("a red seven", "the digit 3 in green", "a blue two", "a yellow eight", "a white zero")
P_PARTIAL = 0.1   # fraction of training captions that name only the digit or only the colour
NULL_PROMPT = ""  # the null condition of classifier-free guidance


def caption(template: str, digit: int, colour: str) -> str:
    text = template.format(c=colour, d=digit, w=DIGIT_WORDS[digit])
    # "an eight", "an 8": the article follows the sound of the word after it.
    return re.sub(r"\ba (eight|8)\b", r"an \1", text)


def all_captions() -> list[tuple[str, int, int]]:
    """Every distinct caption with the (digit, colour index) it names; -1 for what it leaves open."""
    out = []
    for d in range(10):
        for k, c in enumerate(COLOURS):
            out += [(caption(t, d, c), d, k) for t in FULL_TEMPLATES]
    for d in range(10):
        out += [(caption(t, d, "") , d, -1) for t in DIGIT_TEMPLATES]
    for k, c in enumerate(COLOURS):
        out += [(caption(t, 0, c), -1, k) for t in COLOUR_TEMPLATES]
    return out


def colourise(a: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """x = 2 a rgb - 1: (N, 1, H, W) intensities in [0, 1] and (N,) colour indices -> (N, 3, H, W) in [-1, 1]."""
    rgb = torch.tensor(list(PALETTE.values()), dtype=a.dtype)[colour]  # (N, 3)
    return 2 * a * rgb[:, :, None, None] - 1


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 1, H, W) in [-1, 1]: the largest channel, which is the stroke
    intensity for every palette colour (luminance would make blue digits nearly black)."""
    return x.amax(dim=1, keepdim=True)


def hue_saturation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HSV hue (degrees), chroma and value per pixel of (N, 3, H, W) images in [-1, 1] (Smith 1978)."""
    rgb = ((x + 1) / 2).clamp(0, 1)
    r, g, b = rgb.unbind(1)
    v, _ = rgb.max(1)
    chroma = v - rgb.min(1).values
    safe = chroma.clamp_min(1e-8)
    h = torch.where(v == r, ((g - b) / safe) % 6, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return h * 60.0, chroma, v


def measure_colour(x: torch.Tensor, stroke: float = 0.5, white_saturation: float = 0.3) -> torch.Tensor:
    """The palette index each image's strokes are drawn in: the chroma-weighted circular mean hue
    of its stroke pixels (value > ``stroke``) against the palette's hues, or white where the mean
    saturation (chroma / value) of the strokes is below ``white_saturation``. -1: no stroke at all."""
    h, chroma, v = hue_saturation(x)
    mask = (v > stroke).to(x.dtype)
    n = mask.flatten(1).sum(1)
    rad = torch.deg2rad(h)
    cx = (chroma * rad.cos() * mask).flatten(1).sum(1)
    cy = (chroma * rad.sin() * mask).flatten(1).sum(1)
    sat = ((chroma / v.clamp_min(1e-8)) * mask).flatten(1).sum(1) / n.clamp_min(1)
    mean_hue = torch.rad2deg(torch.atan2(cy, cx)) % 360
    hues, chromatic = [], []
    for k, rgb in enumerate(PALETTE.values()):
        ph, pc, _ = hue_saturation(torch.tensor(rgb).view(1, 3, 1, 1) * 2 - 1)
        if float(pc) > 0:
            hues.append(float(ph))
            chromatic.append(k)
    diff = (mean_hue[:, None] - torch.tensor(hues)[None, :] + 180) % 360 - 180
    idx = torch.tensor(chromatic)[diff.abs().argmin(1)]
    idx = torch.where(sat < white_saturation, torch.full_like(idx, COLOURS.index("white")), idx)
    return torch.where(n > 0, idx, torch.full_like(idx, -1))


@dataclass
class CaptionedData(TensorData):
    """Colour MNIST with captions. ``batch`` returns (x (N, 3, 28, 28), cond (N, 384) embeddings)."""

    intensity: Optional[torch.Tensor] = None     # (N, 1, H, W) stroke intensity a in [0, 1]
    captions: tuple = ()                         # every distinct caption
    caption_digit: Optional[torch.Tensor] = None  # (M,) digit each caption names, -1 none
    caption_colour: Optional[torch.Tensor] = None  # (M,) colour index each caption names, -1 none
    embeddings: Optional[torch.Tensor] = None     # (M, 384) caption embeddings
    null_cond: Optional[torch.Tensor] = None      # (384,) the empty prompt's embedding
    colour: Optional[torch.Tensor] = None         # (N,) colour index of the fixed colouring in ``x``
    _lookup: dict = field(default_factory=dict, repr=False, compare=False)

    def to(self, device) -> "CaptionedData":
        # Captions are drawn on the CPU per batch and the trainer moves the batch; a device copy
        # (TensorData.stored_on) would be a plain TensorData without them.
        return self

    def draw(self, step: int, batch_size: int, seed: int) -> dict:
        """The batch of ``step`` with its bookkeeping: index, digit, colour, caption (all (N,))."""
        index = self.batch_index(step, batch_size, seed)
        digit = self.y[index]
        # Colour and caption: drawn from (seed, step) alone, so resuming replays them exactly.
        g = torch.Generator().manual_seed(seed * 1_000_003 + step + 9_999_991)
        colour = torch.randint(0, len(COLOURS), (batch_size,), generator=g)
        u = torch.rand(batch_size, generator=g)
        tmpl = torch.randint(0, len(FULL_TEMPLATES), (batch_size,), generator=g)
        part = torch.randint(0, 2 * max(len(DIGIT_TEMPLATES), len(COLOUR_TEMPLATES)), (batch_size,), generator=g)
        cap = torch.empty(batch_size, dtype=torch.long)
        for i in range(batch_size):
            d, k = int(digit[i]), int(colour[i])
            if u[i] < P_PARTIAL:
                j = int(part[i])
                if j % 2 == 0:
                    text = caption(DIGIT_TEMPLATES[(j // 2) % len(DIGIT_TEMPLATES)], d, "")
                else:
                    text = caption(COLOUR_TEMPLATES[(j // 2) % len(COLOUR_TEMPLATES)], 0, COLOURS[k])
            else:
                text = caption(FULL_TEMPLATES[int(tmpl[i])], d, COLOURS[k])
            cap[i] = self._lookup[text]
        x = colourise(self.intensity[index], colour)
        return {"index": index, "digit": digit, "colour": colour, "caption": cap, "x": x}

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.draw(step, batch_size, seed)
        return d["x"], self.embeddings[d["caption"]]


def build_captioned(options: dict, num: int, seed: int, cache_dir: Optional[Path] = None,
                    encode: Optional[Callable] = None) -> CaptionedData:
    """The ``mnist-text`` data set. Options: ``cache`` (where caption embeddings are cached;
    default $DENOISELAB_CACHE or ~/.cache/denoiselab). ``encode(texts, cache_dir)`` is the text
    encoder (``models.text_encoder.encode``), handed in by whoever builds the run."""
    from .images import load_mnist5k

    if encode is None:
        raise DenoiselabError("the mnist-text data set needs a text encoder to embed its captions: build it through "
                              "denoiselab.runs.open_dataset (or pass encode=)")

    unknown = set(options) - {"cache"}
    if unknown:
        raise DenoiselabError(f"unknown data option(s) {', '.join(sorted(unknown))}: mnist-text takes cache")
    if options.get("cache"):
        cache_dir = Path(options["cache"])
    gray, y = load_mnist5k()
    a = (gray + 1) / 2
    caps = all_captions()
    texts = [c for c, _, _ in caps]
    emb = encode(texts + [NULL_PROMPT], cache_dir)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 31_337)
    colour = torch.randint(0, len(COLOURS), (len(y),), generator=g)
    return CaptionedData(
        x=colourise(a, colour), y=y, kind="images", num_classes=10, class_names=tuple(str(i) for i in range(10)),
        intensity=a, captions=tuple(texts), caption_digit=torch.tensor([d for _, d, _ in caps]),
        caption_colour=torch.tensor([k for _, _, k in caps]), embeddings=emb[:-1], null_cond=emb[-1],
        colour=colour, _lookup={t: i for i, t in enumerate(texts)})


@dataclass
class TextImageData(TensorData):
    """Images with one or more captions each (emoji names, a caption column of a metadata folder).
    ``batch`` returns (x, cond (N, 384)): each image's caption is drawn uniformly from its own,
    from a generator seeded by (seed, step), so resuming replays it exactly."""

    captions: tuple = ()                          # every distinct caption
    caption_sets: tuple = ()                      # per image, the indices of its captions
    embeddings: Optional[torch.Tensor] = None     # (M, 384) caption embeddings
    null_cond: Optional[torch.Tensor] = None      # (384,) the empty prompt's embedding

    def to(self, device) -> "TextImageData":
        return self  # as CaptionedData: captions are looked up on the CPU, the trainer moves the batch

    def caption_index(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """(N,) the caption (index into ``captions``) of each image of the batch of ``step``."""
        index = self.batch_index(step, batch_size, seed)
        u = torch.rand(batch_size, generator=torch.Generator().manual_seed(seed * 1_000_003 + step + 5_555_555))
        sets = [self.caption_sets[int(i)] for i in index]
        return torch.tensor([s[min(int(v * len(s)), len(s) - 1)] for s, v in zip(sets, u.tolist())], dtype=torch.long)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = super().batch(step, batch_size, seed)
        return x, self.embeddings[self.caption_index(step, batch_size, seed)]


def text_images(data: TensorData, captions_per_image: list, encode: Optional[Callable], cache_dir: Optional[Path],
                what: str) -> TextImageData:
    """``data`` with captions (a list of strings per image), embedded once by ``encode(texts,
    cache_dir)`` (``models.text_encoder.encode``, handed in by whoever builds the run)."""
    if encode is None:
        raise DenoiselabError(f"the {what} data set needs a text encoder to embed its captions: build it through "
                              "denoiselab.runs.open_dataset (or pass encode=)")
    if len(captions_per_image) != len(data):
        raise DenoiselabError(f"{what}: {len(captions_per_image)} caption lists for {len(data)} images")
    texts = list(dict.fromkeys(c for caps in captions_per_image for c in caps))
    if not texts or any(not str(c).strip() for c in texts) or any(not caps for caps in captions_per_image):
        raise DenoiselabError(f"{what}: every image needs a non-empty caption")
    lookup = {t: i for i, t in enumerate(texts)}
    emb = encode(texts + [NULL_PROMPT], cache_dir)
    return TextImageData(x=data.x, y=data.y, kind=data.kind, num_classes=data.num_classes,
                         class_names=data.class_names, hflip=data.hflip, captions=tuple(texts),
                         caption_sets=tuple(tuple(lookup[c] for c in caps) for caps in captions_per_image),
                         embeddings=emb[:-1], null_cond=emb[-1])


__all__ = ["COLOURS", "CaptionedData", "DEMO_PROMPTS", "DIGIT_WORDS", "FULL_TEMPLATES", "NULL_PROMPT", "PALETTE", "TextImageData",
           "all_captions", "build_captioned", "caption", "colourise", "grayscale", "measure_colour", "text_images"]
