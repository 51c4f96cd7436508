"""Check report pages in a real headless browser: console errors, images that render, sorting, links.

Drives Debian's chromium (or any Chromium at ``executable``) through Playwright's Python package,
with no download and no network: the pages are local files with data-URI pictures. Used by the
test suite and by ``benchmarks/report_check.py``; needs ``pip install playwright`` and a chromium
binary, and says so in one line when either is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import DenoiselabError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    for c in (os.environ.get("DENOISELAB_CHROMIUM"), *CANDIDATES, shutil.which("chromium")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def browser_missing() -> str | None:
    """Why no browser check can run here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright, or the test extra)"
    if find_chromium() is None:
        return "no chromium binary (apt-get install chromium, or set DENOISELAB_CHROMIUM=PATH)"
    return None


@dataclass
class PageCheck:
    """What the browser saw on one page."""
    url: str
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)   # {alt, natural_width, blank}
    links: list[dict] = field(default_factory=list)    # {href, exists}
    sorts: dict = field(default_factory=dict)          # column header -> sorted correctly both ways

    @property
    def ok(self) -> bool:
        return (not self.console_errors and all(i["natural_width"] > 0 and not i["blank"] for i in self.images)
                and all(link["exists"] for link in self.links) and all(self.sorts.values()))


def is_blank(png: bytes) -> bool:
    """A screenshot is blank when every pixel has (nearly) one colour."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return a.size == 0 or float(a.std()) < 1.0


def _is_sorted(values: list, ascending: bool) -> bool:
    """Non-empty values in order, empty ones (None) after them."""
    filled = [v for v in values if v is not None]
    if any(v is not None for v in values[len(filled):]):
        return False
    key = [(isinstance(v, str), v) for v in filled]  # numbers before text, as the page's script does
    return key == sorted(key, reverse=not ascending)


class Browser:
    """A headless chromium for checking pages; use as a context manager."""

    def __init__(self, executable: str | None = None):
        why = browser_missing()
        if executable and Path(executable).is_file() and why and why.startswith("no chromium"):
            why = None  # the caller named a browser of its own
        self.executable = executable or find_chromium()
        if why:
            raise DenoiselabError(f"cannot check pages in a browser: {why}")

    def __enter__(self) -> "Browser":
        from playwright.sync_api import sync_playwright

        self._profile = tempfile.mkdtemp(prefix="denoiselab-chromium-")  # a fresh user-data-dir
        self._pw = sync_playwright().start()
        self._ctx = self._pw.chromium.launch_persistent_context(
            self._profile, executable_path=self.executable, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.close()
        self._pw.stop()
        shutil.rmtree(self._profile, ignore_errors=True)

    def check(self, path: Path, sort: bool = False) -> PageCheck:
        """Load a page from disk; record console errors, every <img>'s natural width and whether its
        screenshot is blank, whether each link's target file exists, and (``sort``) whether clicking
        each header of a sortable table orders the rows ascending, then descending."""
        url = Path(path).resolve().as_uri()
        page = self._ctx.new_page()
        result = PageCheck(url)
        page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: result.console_errors.append(str(e)))
        page.goto(url, wait_until="load", timeout=120_000)
        for img in page.query_selector_all("img"):
            img.scroll_into_view_if_needed()
            width = img.evaluate("e => e.complete ? e.naturalWidth : 0")
            blank = True
            if width > 0:
                blank = is_blank(img.screenshot())
            result.images.append({"alt": img.get_attribute("alt") or "", "natural_width": width, "blank": blank})
        for a in page.query_selector_all("a[href]"):
            href = a.evaluate("e => e.href")
            parsed = urlparse(href)
            exists = parsed.scheme == "file" and Path(unquote(parsed.path)).is_file()
            result.links.append({"href": href, "exists": exists})
        if sort:
            headers = page.query_selector_all("table.sortable thead th")
            for col, th in enumerate(headers):
                name = th.inner_text().strip()
                ok = True
                for ascending in (True, False):
                    th.click()
                    values = page.evaluate(
                        """col => Array.from(document.querySelectorAll("table.sortable tbody tr")).map(r => {
                             const c = r.cells[col]; let v = c.getAttribute("data-value");
                             if (v === null) v = c.textContent.trim();
                             if (v === "") return null; const n = Number(v); return isNaN(n) ? v.toLowerCase() : n; })""",
                        col)
                    ok = ok and _is_sorted(values, ascending)
                result.sorts[name] = ok
        page.close()
        return result

    def screenshot(self, path: Path, out: Path, width: int = 1200, height: int = 900, scale: float = 1.0) -> Path:
        """The top ``width`` x ``height`` of a page as a PNG, resized by ``scale``."""
        from PIL import Image

        page = self._ctx.new_page()
        page.set_viewport_size({"width": width, "height": height})
        page.goto(Path(path).resolve().as_uri(), wait_until="load", timeout=120_000)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        page.close()
        if scale != 1.0:
            im = Image.open(out)
            im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS).save(out, optimize=True)
        return Path(out)
