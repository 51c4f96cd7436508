"""The comparison page: one sortable row per run in a folder (preset, key settings, steps, training
time, each metric with its floor), linking to each run's own page, and the loss curves overlaid.

It stands on the HTML toolkit (``html.py``) and the run page (``report.py``); ``write_pages``
writes whichever a path asks for."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Optional

from ..errors import DenoiselabError
from .html import data_uri, esc, fmt, page, table, write_page
from .report import REPORT, RunSummary, find_runs, read_run, write_run_report

SORT_SCRIPT = """
// Sort a table by the clicked column: numbers by data-value, text otherwise; empty cells last.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("thead th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute("data-value");
        if (v === null) { v = cell.textContent.trim(); }
        if (v === "") { return null; }
        var n = Number(v);
        return isNaN(n) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def plot_losses(runs: list[RunSummary]):
    """The loss curves of all runs on one log-scale plot; returns PNG bytes."""
    from .common import plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for r in runs:
        if r.losses:
            ax.plot([x["step"] for x in r.losses], [x["loss"] for x in r.losses], lw=1.2, label=r.name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.set_title("Loss curves")
    if any(r.losses for r in runs):
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_comparison(runs: list[RunSummary], page_dir: Path, links: dict[str, str]) -> str:
    metric_names: list[str] = []
    for r in runs:
        for name in r.latest_metrics():
            if name not in metric_names:
                metric_names.append(name)
    setting_names: list[str] = []
    for r in runs:
        for name in r.key_settings():
            if name not in setting_names:
                setting_names.append(name)
    header = ["run", "preset", *setting_names, "steps", "training time (s)", "final loss", *metric_names]

    def num(v, text=None) -> str:
        ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
        return f'<td class="num" data-value="{v if ok else ""}">{text if text is not None else esc(fmt(v))}</td>'

    rows = []
    for r in runs:
        settings = r.key_settings()
        cells = [f'<td data-value="{esc(r.name)}"><a href="{esc(links[r.name])}">{esc(r.name)}</a></td>',
                 f"<td>{esc(r.preset)}</td>", *[f"<td>{esc(settings.get(k, ''))}</td>" for k in setting_names],
                 num(r.steps), num(None if r.train_seconds is None else round(r.train_seconds, 1)), num(r.final_loss)]
        metrics = r.latest_metrics()
        for name in metric_names:
            m = metrics.get(name)
            if m is None:
                cells.append(num(None))
            else:
                title = f"against {m.get('ref')}" + (f", {m['sampler']} {m['steps']} steps" if m.get("sampler") else "")
                cells.append(num(m.get("value"), f'<span title="{esc(title)}">{esc(fmt(m.get("value")))}</span> '
                                 f'<span class="floor">(floor {esc(fmt(m.get("floor")))})</span>'))
        rows.append(cells)
    loss_png = data_uri(plot_losses(runs), "image/png")
    # The table grows a column per metric: let it use the window's width.
    body = ["<style>body { max-width: 1900px; }</style>", f"<h1>{len(runs)} runs compared</h1>",
            f"<p class=\"muted\">{esc(page_dir.resolve())}. Click a column header to sort; each run links to its "
            "own page. Metrics are each run's latest evaluation, with the floor (real vs real) beside each.</p>",
            f'<div class="wide">{table(header, rows, cls="sortable", raw=True)}</div>',
            f'<figure><img src="{loss_png}" alt="loss curves"><figcaption>Training loss of every run, '
            "overlaid (log scale).</figcaption></figure>"]
    return page(f"denoiselab: {len(runs)} runs compared", body, SORT_SCRIPT)


def write_comparison(root: Path, out: Optional[Path] = None, run_pages: bool = True) -> tuple[Path, list[Path]]:
    """Write ROOT/report.html (or ``out``): one sortable row per run in ``root``, linking to each
    run's own report.html (rebuilt here, so every link resolves). Returns (page, run pages)."""
    root = Path(root)
    paths = find_runs(root)
    if not paths:
        raise DenoiselabError(f"{root} holds no run directories (folders with a config.json): pass a run "
                              "directory or a folder of them")
    out = Path(out) if out else root / REPORT
    runs = [read_run(p) for p in paths]
    pages = [write_run_report(p) for p in paths] if run_pages else [p / REPORT for p in paths]
    links = {r.name: Path(os.path.relpath(pg, out.parent)).as_posix() for r, pg in zip(runs, pages)}
    return write_page(out, render_comparison(runs, out.parent, links)), pages


def write_pages(path: Path, out: Optional[Path] = None) -> list[Path]:
    """A run directory gets its page; a folder of runs gets the comparison page and every run's page."""
    path = Path(path)
    if not path.is_dir():
        raise DenoiselabError(f"{path} is not a directory: pass a run directory or a folder of runs")
    if (path / "config.json").is_file():
        return [write_run_report(path, out)]
    page_path, pages = write_comparison(path, out)
    return [page_path, *pages]
