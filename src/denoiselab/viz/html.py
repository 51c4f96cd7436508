"""The HTML toolkit under every page: the page skeleton, escaping, number formatting, tables and
pictures inlined as data URIs.

A page is one self-contained file: pictures are inlined (so it can be mailed or opened offline),
style and script are inline, and a Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import base64
import math
import os
from html import escape
from pathlib import Path

from ..io import atomic_write

# Pictures larger than this are linked (kept beside the page) rather than inlined.
INLINE_LIMIT = 8 * 2**20
# The pictures a page shows, by suffix: their MIME type.
IMAGE_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".svg": "image/svg+xml", ".webp": "image/webp"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.floor { color: #777; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; max-height: 520px; border: 1px solid #eee; image-rendering: pixelated; }
figcaption { font-size: 0.85em; color: #555; max-width: 640px; }
.previews figure img { width: 180px; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
table.sortable th { cursor: pointer; user-select: none; } table.sortable td { white-space: nowrap; }
.wide { overflow-x: auto; }
table.sortable th.asc::after { content: " \\25B2"; } table.sortable th.desc::after { content: " \\25BC"; }
.muted { color: #777; }
"""


def esc(x) -> str:
    return escape(str(x), quote=True)


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.{digits}g}"
    return str(v)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def file_data_uri(path: Path) -> str:
    return data_uri(path.read_bytes(), IMAGE_MIME.get(path.suffix.lower(), "application/octet-stream"))


def img_tag(path: Path, page_dir: Path, alt: str) -> str:
    """Inline the picture; one too large to inline is linked relative to the page instead."""
    if path.stat().st_size <= INLINE_LIMIT:
        src = file_data_uri(path)
    else:
        src = Path(os.path.relpath(path, page_dir)).as_posix()
    return f'<img src="{src}" alt="{esc(alt)}">'


def figure(path: Path, page_dir: Path, caption: str) -> str:
    return f"<figure>{img_tag(path, page_dir, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def table(header: list[str], rows: list[list[str]], cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are HTML already)."""
    cell = (lambda c: c) if raw else esc
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join("<tr>" + "".join(c if raw and c.startswith("<td") else f"<td>{cell(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def page(title: str, body: list[str], script: str = "") -> str:
    """The HTML document: inline style, inline script (if any), a policy that forbids any fetch."""
    js = f"<script>{script}</script>" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # No network: images are data URIs; the policy blocks any fetch a picture might try.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data: 'self'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + f"\n{js}</body></html>\n")


def write_page(path: Path, text: str) -> Path:
    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)  # a page is for reading, by a web server too

    atomic_write(Path(path), write)
    return Path(path)
