"""The guidance sweep: samples over guidance scales x classes (or prompts) in one picture, drawn
by `denoiselab plot guidance` and, for class-conditional image runs, after training."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import DenoiselabError
from .conditions import class_labels, guided_run, is_text, num_classes
from .load import load_run
from .plan import sampling_plan


def sweep_columns(run, classes, prompts, negative_prompt) -> tuple[list[str], list[dict]]:
    """The sweep's columns: (names, guided_run keywords), one per class (default: every class) or,
    for a text run, one per prompt (default: the demo prompts)."""
    k = num_classes(run)
    text = is_text(run)
    if prompts is not None and not text:
        raise DenoiselabError(
            f"{run.run_dir} is not a text-conditional model: drop --prompts" + (" and choose --classes" if k else "")
        )
    if not k and not text:
        raise DenoiselabError(
            f"{run.run_dir} is an unconditional model: plot guidance needs a class- or text-conditional run"
        )
    if text:
        if classes:
            raise DenoiselabError(
                f"{run.run_dir} is a text-conditional model: choose columns with --prompts, not --classes"
            )
        from ..data.captioned import DEMO_PROMPTS

        names = list(DEMO_PROMPTS) if prompts is None else list(prompts)
        columns = [dict(prompts=[p], negative_prompt=negative_prompt) for p in names]
    else:
        classes = list(range(k)) if not classes else [int(c) for c in classes]
        for c in classes:
            class_labels(1, k, c, f"{run.run_dir}")  # range check, one clear line
        class_names = list(run.info.get("class_names") or [])
        names = [str(class_names[c]) if c < len(class_names) else str(c) for c in classes]
        columns = [dict(cls=c) for c in classes]
    return names, columns


def plot_guidance(run, out: Path, *, scales, classes=None, batch_size: int = 4, num_batches: int = 1,
                  sampler: Optional[str] = None, steps: Optional[int] = None, seed: int = 0, log=None, prompts=None,
                  negative_prompt=None, start: str = "auto") -> Path:
    """Rows: guidance scales; columns: classes (or prompts, for a text run), each a block of
    batch_size x num_batches samples. Every cell uses the same noise (sample i from (seed, i)), so
    along a column one sees the same starting noise pulled harder towards its class as w grows."""
    from ..samplers.api import generate
    from ..viz.images import save_png, tile_images

    names, columns = sweep_columns(run, classes, prompts, negative_prompt)
    text = is_text(run)
    if batch_size < 1 or num_batches < 1:
        raise DenoiselabError("--batch-size and --num-batches must be at least 1")
    if not scales:
        raise DenoiselabError("no guidance scales: give --scales W [W ...]")
    per = batch_size * num_batches
    plan = sampling_plan(run, sampler=sampler, steps=steps, start=start)  # the run's own unless told otherwise
    rows = []
    for w in scales:
        cells = []
        for column in columns:
            den, labels = guided_run(run, per, guidance=w, **column)
            x, _ = generate(den, per, run.sample_shape, seed=seed, cond=labels, batch_size=batch_size, progress=True,
                            **plan.kwargs())
            cells.append(run.decode(x))
        rows.append(cells)
        if log:
            log(f"guidance {w:g}: {len(columns)} {'prompts' if text else 'classes'} x {per} samples")
    # One image per cell (a near-square tile of its samples), laid out scales x classes.
    import numpy as np

    from ..viz.images import auto_scale, label_table

    scale = auto_scale(run.image_shape[-1])
    side = max(1, int(np.ceil(np.sqrt(per))))
    tiles = [[tile_images(x, side, scale=scale) for x in cells] for cells in rows]
    return save_png(label_table(tiles, [f"w = {w:g}" for w in scales], names), out)


def training_sweep(out: Path, data, device=None) -> Optional[Path]:
    """Class-conditional image runs get their guidance sweep (``guidance.png``, one sample per class
    and scale, the run's own sampler) after training, so the run's page shows what the scale trades."""
    if data.kind != "images":
        return None
    run = load_run(Path(out), device=device)
    if run.denoiser is None or is_text(run) or not num_classes(run):
        return None
    return plot_guidance(run, Path(out) / "guidance.png", scales=[0.0, 1.0, 2.0, 3.0, 5.0, 7.0], batch_size=1)
