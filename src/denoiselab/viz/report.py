"""The run page: ``RUN_DIR/report.html``, one run on one self-contained page (built with the HTML
toolkit of ``html.py``; the comparison page over a folder of runs, ``compare.py``, stands on this one).

The page reads what a run directory already holds (config.json, metrics.jsonl with its loss lines
and ``evaluate`` records, pictures.json and the pictures); it never loads the network, so
rebuilding one takes a second.

Pictures the page knows get a section and a caption (``PICTURES``); any other PNG or GIF in the
run directory is still shown, under "Other pictures", so a new picture needs no code here.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import DenoiselabError
from ..io import read_jsonl
from .html import IMAGE_MIME, esc, figure, fmt, page, table, write_page

REPORT = "report.html"

# The known pictures of each section, sections in page order: file name -> caption.
PICTURES: dict[str, dict[str, str]] = {
    "Samples": {
        "samples.png": "Samples of the trained model.",
        "reverse.gif": ("The reverse process: x_t and the prediction x0_hat along the sampler's steps "
                        "(Ho et al. 2020, Algorithm 2; Song et al. 2021, DDIM)."),
        "guided.gif": "Guided sampling, step by step (Ho & Salimans 2022).",
        "denoiser_sigmas.png": "The single-step denoiser at several noise levels sigma.",
        "reconstructions.png": ("The autoencoder: held-out images (odd rows) above their reconstructions "
                                "decode(mean of q(z | x)) (even rows)."),
    },
    "Evaluation": {
        "samplers/samplers.png": ("Sample quality against the number of network evaluations (NFE), every "
                                  "sampler and time grid (`denoiselab benchmark-samplers`)."),
    },
    "Training": {
        "loss.png": "Training loss (mean over each log interval), log scale.",
        "dataset_summary.png": ("Training images as the trainer sees them: the first batch, after "
                                "augmentation (random horizontal flips when data.flip is on)."),
    },
    "Forward process": {
        "forward.png": ("The forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) at "
                        "growing t (Ho et al. 2020, eq. 4)."),
        "forward.gif": "The forward process as an animation, t from 0 to T.",
        "histograms.png": ("Pixel values of the training images and of x_T: the colour distribution ends in "
                           "N(0, 1)."),
        "schedule_images.png": ("Noise schedules compared on one image: linear (Ho et al. 2020), cosine "
                                "(Nichol & Dhariwal 2021), quadratic and sigmoid."),
    },
    "Guidance and editing": {
        "guidance.png": ("Classifier-free guidance sweep: classes against guidance scales (Ho & Salimans 2022; "
                         "`denoiselab plot guidance`)."),
        "guidance_sweep.png": ("Classifier-free guidance sweep: classes against guidance scales (Ho & Salimans "
                               "2022; `denoiselab plot guidance`)."),
    },
}
PAGE_SECTIONS = tuple(PICTURES)
CAPTIONS = {name: caption for known in PICTURES.values() for name, caption in known.items()}


# -- reading a run directory ------------------------------------------------------------------

def checkpoint_header(path: Path) -> dict:
    """Parameter count and step from a safetensors header alone (8-byte length + JSON), without
    reading the tensors: the report stays fast for any model size."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(os.fstat(f.fileno()).st_size - 8, 100 * 2**20):
                return {}  # not a safetensors file: its first bytes are no header length
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return {}
    params = sum(math.prod(v["shape"]) for k, v in header.items()
                 if k.startswith("model.") and isinstance(v, dict) and "shape" in v)
    out = {"params": params}
    try:
        out["step"] = json.loads(header.get("__metadata__", {}).get("state", "{}")).get("step")
    except ValueError:
        pass
    return out


@dataclass
class RunSummary:
    """What the pages show about one run, read from its directory."""
    path: Path
    config: dict
    losses: list[dict]
    evaluations: list[dict]
    pictures: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def preset(self) -> str:
        return str(self.config.get("preset", "?"))

    @property
    def steps(self) -> Optional[int]:
        if self.losses:
            return int(self.losses[-1]["step"])
        return self.header.get("step")

    @property
    def train_seconds(self) -> Optional[float]:
        """Wall time of training: each loss line carries the seconds since its fit() began, so a
        resumed run is the sum of its segments (the clock restarts where time goes backwards)."""
        times = [float(r["time"]) for r in self.losses if "time" in r]
        if not times:
            return None
        total, prev = 0.0, 0.0
        for t in times:
            if t < prev:
                total += prev
            prev = t
        return total + prev

    @property
    def final_loss(self) -> Optional[float]:
        return float(self.losses[-1]["loss"]) if self.losses else None

    @property
    def num_classes(self) -> int:
        return int(self.config.get("model", {}).get("options", {}).get("num_classes", 0) or 0)

    def latest_metrics(self) -> dict[str, dict]:
        """Each metric's latest value with its floor, over all evaluation records."""
        out: dict[str, dict] = {}
        for rec in self.evaluations:
            res = rec["evaluate"]
            for name, r in res.get("metrics", {}).items():
                out[name] = {**r, "ref": res.get("ref"), "sampler": rec.get("sampler"), "steps": rec.get("steps")}
        return out

    def key_settings(self) -> dict[str, str]:
        c = self.config
        model, diff, train = c.get("model", {}), c.get("diffusion", {}), c.get("train", {})
        out = {"data": str(c.get("data", {}).get("name", "?")), "model": str(model.get("name", "?"))}
        if self.header.get("params"):
            out["model"] += f" ({self.header['params'] / 1e6:.2f}M)"
        kind = diff.get("kind", "vp")
        if kind == "vp":
            out["diffusion"] = f"{diff.get('schedule')} T={diff.get('T')}, {diff.get('parameterization')}"
        else:
            out["diffusion"] = kind
        if diff.get("p_uncond"):
            out["diffusion"] += f", p_uncond {diff['p_uncond']}"
        out["batch"] = str(train.get("batch_size", "?"))
        out["lr"] = f"{train.get('lr', float('nan')):g}"
        if train.get("ema_decay"):
            out["EMA"] = f"{train['ema_decay']:g}"
        student = c.get("distill", {})
        if student.get("method"):  # a consistency student names its teacher
            w = student.get("teacher_guidance", 1.0)
            out["student of"] = (f"{Path(student.get('teacher', '?')).name} ({student['method']}"
                                 + (f", w {w:g})" if w != 1.0 else ")"))
        ae = c.get("latent", {}).get("autoencoder")
        if ae:  # a latent run names its autoencoder
            out["latents of"] = Path(ae).name
        return out


def read_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DenoiselabError(f"run directory not found: {run_dir} (train one with `denoiselab train --preset NAME "
                              f"--out {run_dir}`)")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise DenoiselabError(f"{run_dir} has no config.json: pass a run directory made by `denoiselab train`, "
                              "or a folder of them")
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise DenoiselabError(f"{cfg_path} is not valid JSON ({e}): retrain or fix the file") from None
    metrics = run_dir / "metrics.jsonl"
    rows = [r for r in read_jsonl(metrics) if isinstance(r, dict)] if metrics.is_file() else []
    pictures = {}
    if (run_dir / "pictures.json").is_file():
        try:
            pictures = json.loads((run_dir / "pictures.json").read_text())
        except ValueError:
            pictures = {}
    return RunSummary(run_dir, config, [r for r in rows if "loss" in r and "step" in r],
                      [r for r in rows if isinstance(r.get("evaluate"), dict)], pictures,
                      checkpoint_header(run_dir / "checkpoint.safetensors"))


def find_runs(root: Path) -> list[Path]:
    """The run directories directly inside ``root`` (those holding a config.json), by name."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "config.json").is_file())

# -- the run page -----------------------------------------------------------------------------

def _caption(run: RunSummary, rel: str) -> str:
    if rel == "samples.png":
        s = run.pictures.get("samples")
        start = ", starting from the data's moments" if s and s.get("start") == "moments" else ""
        how = f" {s['sampler'].upper()}, {s['steps']} steps (NFE {s['nfe']}){start}." if s else ""
        if s and s.get("prompts"):
            w = f" at guidance scale {s['guidance']:g}" if s.get("guidance") is not None else ""
            return f"Text prompts {s['prompts']}; classifier-free guidance{w} (Ho & Salimans 2022).{how}"
        if run.num_classes:
            w = f" at guidance scale {s['guidance']:g}" if s and s.get("guidance") is not None else ""
            return (f"Class grid: samples of each of the {run.num_classes} classes, one class per column, "
                    f"classifier-free guidance{w} (Ho & Salimans 2022).{how}")
        from ..data import TOY_DATASETS

        if run.config.get("data", {}).get("name") in TOY_DATASETS:
            return "Samples (red) over the data (grey), drawn with the run's own sampler (config.sample)."
        return "Samples of the trained model." + how
    if rel == "reconstructions.png" and run.pictures.get("reconstructions"):
        r = run.pictures["reconstructions"]
        return (f"The autoencoder: {r['images']} images (odd rows) above their reconstructions decode(mean of "
                f"q(z | x)) (even rows); on these {r['num']}, PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}. "
                f"Latent scale {r['latent_scale']:.4g} (Rombach et al. 2022, sec. 4.3.2).")
    if rel == "reverse.gif" and (run.num_classes or run.pictures.get("samples", {}).get("prompts")):
        return ("Guided sampling, step by step: x_t and the prediction x0_hat, one class or prompt per column "
                "(Ho & Salimans 2022; DDIM, Song et al. 2021).")
    if rel == "reverse.gif":
        from ..data import TOY_DATASETS

        if run.config.get("data", {}).get("name") in TOY_DATASETS:
            return ("The reverse process in 2D: the samples x_t (blue) move from noise onto the data (grey), one "
                    "frame per recorded sampler step, drawn with the run's own sampler (config.sample).")
    return CAPTIONS[rel]


def _metrics_section(run: RunSummary) -> list[str]:
    if not run.evaluations:
        return ["<p class=\"muted\">No evaluation yet: <code>denoiselab evaluate "
                f"{esc(run.path)} --ref DATA</code> scores samples against the data, with the floor "
                "(real data against real data) beside each number.</p>"]
    out = ["<p>Each score is read against its floor: the same metric for real data against real data. "
           "Newest first.</p>"]
    for rec in reversed(run.evaluations):
        res = rec["evaluate"]
        how = f"{rec.get('sampler')}, {rec.get('steps')} steps" if rec.get("sampler") else "samples file"
        out.append(f"<h3>{esc(rec.get('time', ''))} against {esc(res.get('ref'))} "
                   f"({esc(res.get('num'))} samples; {esc(how)})</h3>")
        feats = res.get("features")
        if feats:
            acc = feats.get("heldout_accuracy")
            out.append(f"<p>Features: {esc(feats.get('network'))}, {esc(feats.get('dim'))}-d"
                       + (f", held-out accuracy {acc:.4f}" if acc is not None else "") + ".</p>")
        rows = []
        for name, r in res.get("metrics", {}).items():
            se = f" +- {r['se']:.2g}" if "se" in r else ""
            ci = f"{fmt(r['ci'][0], 5)} to {fmt(r['ci'][1], 5)}" if "ci" in r else ""
            rows.append([f"<td>{esc(name)}</td>", f'<td class="num">{fmt(r.get("value"), 5)}{esc(se)}</td>',
                         f"<td>{esc(ci)}</td>", f'<td class="num floor">{fmt(r.get("floor"), 5)}</td>'])
        best = "best (identical images)" if res.get("kind") == "reconstruction" else "floor (real vs real)"
        out.append(table(["metric", "value", "95% interval", best], rows, raw=True))
        for w in res.get("warnings", []):
            out.append(f"<p class=\"muted\">warning: {esc(w)}</p>")
    return out


def _numbers_tables(run: RunSummary) -> list[str]:
    """pictures.json numbers beside the forward-process pictures."""
    out = []
    hist = run.pictures.get("pixel_histograms")
    if hist:
        rows = []
        for key, label in (("data", "training images"), ("x_T", f"x_T (t = {hist.get('t')})")):
            for ch, v in hist.get(key, {}).items():
                rows.append([label, ch, f"{v['mean']:+.3f}", f"{v['std']:.3f}", f"{v['ks']:.3f}"])
        out.append(table(["pixels", "channel", "mean", "std", "KS distance to N(0, 1)"], rows))
    surv = run.pictures.get("schedule_survival")
    if surv:
        rows = [[name, str(v.get("steps_corr_above_0.5")), f"{v.get('corr_at_T_half', float('nan')):.3f}"]
                for name, v in surv.items()]
        out.append(table(["schedule", "steps with corr(x_t, x_0) > 0.5", "corr at T/2"], rows))
    return out


def list_run_pictures(run_dir: Path) -> list[str]:
    """Every picture in the run directory (and its subfolders), as paths relative to it."""
    run_dir = Path(run_dir)
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_MIME and not p.name.startswith("."))


def render_run(run: RunSummary, page_dir: Path) -> str:
    d = run.path
    facts = [["preset", run.preset], ["steps", fmt(run.steps)],
             ["training time", f"{run.train_seconds:.1f} s" if run.train_seconds is not None else ""],
             ["final training loss", fmt(run.final_loss)], *[[k, v] for k, v in run.key_settings().items()]]
    body = [f"<h1>Run <code>{esc(run.name)}</code></h1>",
            f"<p class=\"muted\">{esc(d.resolve())}. Rebuild this page with <code>denoiselab report "
            f"{esc(d)}</code>.</p>", table(["", ""], facts),
            "<details><summary>Config (config.json)</summary><pre>"
            f"{esc(json.dumps(run.config, indent=2, sort_keys=True))}</pre></details>"]
    pictures = list_run_pictures(d)
    shown = set()
    for section in PAGE_SECTIONS:
        part = []
        for rel in PICTURES[section]:
            if rel in pictures:
                part.append(figure(d / rel, page_dir, _caption(run, rel)))
                shown.add(rel)
        if section == "Training":
            previews = [p for p in pictures if p.startswith("previews/")]
            if previews:
                shown.update(previews)
                figs = "".join(figure(d / p, page_dir, f"step {int(''.join(filter(str.isdigit, Path(p).stem)) or 0)}")
                               for p in previews)
                part.append("<h3>Sample grids over training</h3><p>DDIM, 25 steps, from the same seeds at "
                            f"every preview, so the same samples mature.</p><div class=\"previews\">{figs}</div>")
        if section == "Forward process":
            part += _numbers_tables(run)
        if section == "Evaluation":
            part = _metrics_section(run) + part
        if part:
            body += [f"<h2>{esc(section)}</h2>", *part]
    others = [p for p in pictures if p not in shown]
    if others:
        body.append("<h2>Other pictures</h2>")
        body += [figure(d / p, page_dir, p) for p in others]
    return page(f"denoiselab run {run.name}", body)


def write_run_report(run_dir: Path, out: Optional[Path] = None) -> Path:
    """Write RUN_DIR/report.html (or ``out``): the run on one self-contained page."""
    run = read_run(run_dir)
    out = Path(out) if out else Path(run_dir) / REPORT
    return write_page(out, render_run(run, out.parent))
