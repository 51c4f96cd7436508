"""Labelled and captioned image folders: a folder of images with a ``metadata.csv`` or
``metadata.jsonl`` beside them, the Hugging Face ``imagefolder`` convention: a ``file_name`` column
(the image's path relative to the folder) and any other columns. ``data.label_column`` names the
column a class-conditional model learns (Pokemon types, say); ``data.caption_column`` the one a
text-conditional model learns (``text``). Only the folder's top-level metadata file is read.

Every row must be usable: a missing file, a missing column, an image that does not decode or an
empty label or caption is one error naming the file and its line, before any training starts. A
plain folder skips a broken file with a warning, since nothing names it; a metadata row is a
statement about the data set that is wrong, and a caption-conditioned model trained around it
would learn a different data set than the user wrote down.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import DenoiselabError
from .tensors import TensorData

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
FILE_COLUMN = "file_name"


@dataclass(frozen=True)
class MetadataRow:
    line: int        # line of the metadata file the row starts on (1 = the first line)
    values: dict     # column -> value as text


def find_metadata(root: Path) -> Optional[Path]:
    """The folder's metadata file, None without one; both kinds at once is ambiguous."""
    found = [root / n for n in METADATA_FILES if (root / n).is_file()]
    if len(found) > 1:
        raise DenoiselabError(f"{root} holds both metadata.csv and metadata.jsonl: keep one of them")
    return found[0] if found else None


def _text(value) -> str:
    return "" if value is None else (value if isinstance(value, str) else json.dumps(value))


def _read_csv(path: Path) -> tuple[list[str], list[MetadataRow]]:
    rows = []
    # utf-8-sig: spreadsheet programs write a byte-order mark before the header.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        start = reader.line_num + 1
        for fields in reader:
            if not any(v.strip() for v in fields):
                start = reader.line_num + 1
                continue
            if len(fields) != len(header):
                raise DenoiselabError(f"{path} line {start}: {len(fields)} fields, but the header has {len(header)} "
                                      f"({', '.join(header)}): quote values that hold commas")
            rows.append(MetadataRow(start, dict(zip(header, fields))))
            start = reader.line_num + 1
    return header, rows


def _read_jsonl(path: Path) -> tuple[list[str], list[MetadataRow]]:
    columns: dict[str, None] = {}
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DenoiselabError(f"{path} line {i} is not valid JSON ({e.msg}): write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise DenoiselabError(f"{path} line {i} is not a JSON object: write one object per line, "
                                  '{"file_name": "a.png", ...}')
        columns.update(dict.fromkeys(obj))
        rows.append(MetadataRow(i, {k: _text(v) for k, v in obj.items()}))
    return list(columns), rows


def read_metadata(path) -> tuple[list[str], list[MetadataRow]]:
    """(the columns, the rows) of a metadata.csv or metadata.jsonl."""
    path = Path(path)
    try:
        columns, rows = (_read_jsonl if path.suffix == ".jsonl" else _read_csv)(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DenoiselabError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if FILE_COLUMN not in columns:
        raise DenoiselabError(f"{path} has no {FILE_COLUMN} column (its columns: {', '.join(columns) or 'none'}): "
                              "name each image's path relative to the folder in a file_name column")
    if not rows:
        raise DenoiselabError(f"{path} lists no images: add one row per image")
    return columns, rows


def _column_value(path: Path, row: MetadataRow, column: str, what: str) -> str:
    value = row.values.get(column, "").strip()
    if not value:
        name = row.values.get(FILE_COLUMN, "")
        raise DenoiselabError(f"{path} line {row.line} ({name}): the {what} in column {column!r} is empty: "
                              f"write one, or remove the row")
    return value


def _image(root: Path, path: Path, row: MetadataRow, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    from ..image_io import fit_picture

    name = row.values.get(FILE_COLUMN, "").strip()
    if not name:
        raise DenoiselabError(f"{path} line {row.line}: the file_name is empty: name the image, or remove the row")
    f = root / name
    if not f.is_file():
        raise DenoiselabError(f"{path} line {row.line}: image {name} not found in {root} (file_name is relative "
                              "to the folder of the metadata file)")
    try:
        with Image.open(f) as im:
            im.load()
            return fit_picture(im, size, channels)
    except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
        reason = str(e).splitlines()[0] if str(e) else ""
        raise DenoiselabError(f"{path} line {row.line}: {name} is not a readable image ({type(e).__name__}"
                              f"{': ' + reason if reason else ''}): replace the file or remove the row") from None


def load_metadata_folder(path, image_size: int = 64, channels: int = 3, label_column: str = "",
                         caption_column: str = "", limit: int = 0
                         ) -> tuple[torch.Tensor, Optional[torch.Tensor], tuple[str, ...], Optional[list[str]]]:
    """(images (N, C, S, S) in [-1, 1], labels (N,) or None, class names, captions or None) of the
    rows of the folder's metadata file, in file order; classes are the label column's distinct
    values, sorted."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DenoiselabError(f"image folder not found: {root} (pass an existing directory with --set data.path=DIR)")
    if channels not in (1, 3):
        raise DenoiselabError(f"image folder: channels must be 1 or 3, got {channels}")
    meta = find_metadata(root)
    if meta is None:
        asked = "label_column" if label_column else "caption_column"
        raise DenoiselabError(f"data.{asked} needs a metadata.csv or metadata.jsonl in {root} "
                              "(a file_name column and one column per attribute)")
    columns, rows = read_metadata(meta)
    for column in (label_column, caption_column):
        if column and column not in columns:
            which = "label_column" if column == label_column else "caption_column"
            raise DenoiselabError(f"{meta} has no column {column!r} (its columns: {', '.join(columns)}): "
                                  f"set data.{which} to one of them")
    rows = rows[:limit] if limit else rows
    names = [_column_value(meta, r, label_column, "label") for r in rows] if label_column else []
    caps = [_column_value(meta, r, caption_column, "caption") for r in rows] if caption_column else None
    images = np.stack([_image(root, meta, r, image_size, channels) for r in rows])
    x = torch.from_numpy(images).float().div_(127.5).sub_(1.0)  # bit-equal to tensors.decode_uint8
    classes = tuple(sorted(set(names)))
    y = torch.tensor([classes.index(n) for n in names], dtype=torch.int64) if names else None
    return x, y, classes, caps


OPTIONS = ("path", "image_size", "channels", "limit", "label_column", "caption_column", "cache")


def build_metadata_folder(options: dict, encode: Optional[Callable] = None) -> TensorData:
    """The ``folder`` data set when ``label_column`` or ``caption_column`` is set: class labels from
    the one, caption embeddings (``encode``, the text encoder handed in) from the other."""
    from .captioned import text_images
    from .image_files import image_set

    label, caption = str(options.get("label_column") or ""), str(options.get("caption_column") or "")
    x, y, classes, caps = load_metadata_folder(options["path"], int(options.get("image_size", 64)),
                                               int(options.get("channels", 3)), label, caption,
                                               int(options.get("limit", 0)))
    data = image_set(x, y, classes, options, OPTIONS)
    if caps is None:
        return data
    cache = Path(options["cache"]) if options.get("cache") else None
    return text_images(data, [[c] for c in caps], encode, cache, what=f"folder {options['path']}")


__all__ = ["FILE_COLUMN", "METADATA_FILES", "MetadataRow", "build_metadata_folder", "find_metadata",
           "load_metadata_folder", "read_metadata"]
