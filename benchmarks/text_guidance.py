"""Does a text model draw what the prompt names? `mnist-text`, prompts naming digit and colour.

Samples ``--num`` images from a trained text run, sample i prompted with digit i mod 10 in colour
(i // 10) mod 7 through the caption templates in turn (``--templates train``, the training
captions, or ``heldout``, paraphrases never seen in training), with classifier-free guidance at
each ``--guidance`` scale (the run's own sampler unless ``--sampler``/``--steps`` say otherwise). Each sample is judged twice:

- digit: the evaluation feature network (evaluation/featurenet.py, trained on grayscale MNIST-5k)
  classifies its grayscale version (the largest channel, ``data.captioned.grayscale``);
- colour: the chroma-weighted mean hue of its stroke pixels, or white for unsaturated strokes
  (``data.captioned.measure_colour``).

Prints per colour and per digit accuracy (digit right, colour right, both right) and the overall
figures. Target (issue 9): >= 90% of samples right on both.

    PYTHONPATH=src .venv/bin/python benchmarks/text_guidance.py runs/mnist-text --guidance 3

``--write-results`` writes one row per guidance scale (digit, colour and both right over all
samples) into docs/results/text.md, section ``text-both-right``:

    .venv/bin/python benchmarks/text_guidance.py runs/mnist-text --guidance 3 --write-results
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from denoiselab.data import build_dataset
from denoiselab.data.captioned import COLOURS, FULL_TEMPLATES, caption, grayscale, measure_colour
from denoiselab.evaluation.images import domain_extractor
from denoiselab.guidance import guided
from denoiselab.io import cache_folder
from denoiselab.models.text_encoder import prompt_condition
from denoiselab.runs import load_run
from denoiselab.samplers.api import generate
from results import add_write_flag, markdown_table, write_table

# Paraphrases absent from the training captions: does the model follow the meaning, not the string?
HELDOUT_TEMPLATES = (
    "a {w} drawn in {c}",
    "{c} number {d}",
    "the handwritten digit {w} in {c} ink",
    "a picture of a {c} {w}",
)


def prompts_for(num: int, templates: tuple[str, ...]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    digit = torch.arange(num) % 10
    colour = (torch.arange(num) // 10) % len(COLOURS)
    tmpl = (torch.arange(num) // (10 * len(COLOURS))) % len(templates)
    texts = [caption(templates[int(k)], int(d), COLOURS[int(c)]) for d, c, k in zip(digit, colour, tmpl)]
    return texts, digit, colour


@torch.no_grad()
def judge(x: torch.Tensor, classify) -> tuple[torch.Tensor, torch.Tensor]:
    g = grayscale(x)
    digit = torch.cat([classify(g[i:i + 250]).argmax(1) for i in range(0, len(g), 250)])
    return digit, measure_colour(x)


def table(rows: list[tuple[str, torch.Tensor, torch.Tensor]]) -> str:
    lines = [f"{'group':<12} {'n':>5} {'digit':>7} {'colour':>7} {'both':>7}"]
    for name, dig_ok, col_ok in rows:
        both = dig_ok & col_ok
        lines.append(f"{name:<12} {len(both):>5d} {dig_ok.double().mean():7.1%} {col_ok.double().mean():7.1%} "
                     f"{both.double().mean():7.1%}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained mnist-text run directory")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--guidance", type=float, nargs="+", default=[3.0], help="CFG scales (1 = conditional model)")
    ap.add_argument("--negative-prompt", default=None)
    ap.add_argument("--templates", choices=["train", "heldout"], default="train")
    ap.add_argument("--sampler", default=None, help="default: the run's own (mnist-text: dpmpp-2m-sde)")
    ap.add_argument("--steps", type=int, default=None, help="default: the run's own")
    ap.add_argument("--eta", type=float, default=None, help="default: the run's own when its sampler is used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--per-group", action="store_true", help="the per colour and per digit rows (default: all)")
    ap.add_argument("--grid", default=None, help="save the first 70 samples of the first scale as a PNG grid")
    add_write_flag(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    run = load_run(Path(args.run))
    own = run.config.sample
    eta = args.eta if args.eta is not None else (own.eta if args.sampler in (None, own.sampler) else None)
    args.sampler, args.steps = args.sampler or own.sampler, args.steps or own.steps
    opts = {} if eta is None else {"eta": eta}
    ref = build_dataset("mnist")
    classify = domain_extractor(ref, cache_folder(), log=print).classify
    templates = FULL_TEMPLATES if args.templates == "train" else HELDOUT_TEMPLATES
    texts, want_digit, want_colour = prompts_for(args.num, templates)
    cond, uncond = prompt_condition(run.net.null_cond, texts, args.num, args.negative_prompt)
    print(f"{run.run_dir}: {args.num} samples, {args.templates} captions (e.g. {texts[0]!r}, {texts[17]!r}), "
          f"{args.sampler} {args.steps} steps, seed {args.seed}")
    summary, published = [], []
    for w in args.guidance:
        t0 = time.perf_counter()
        x, nfe = generate(guided(run.denoiser, scale=w, uncond=uncond), args.num, run.sample_shape,
                          sampler=args.sampler, steps=args.steps, seed=args.seed, cond=cond, batch_size=250,
                          **opts)
        secs = time.perf_counter() - t0
        if args.grid and w == args.guidance[0]:
            from denoiselab.viz.images import save_grid

            save_grid(x[:70], Path(args.grid), nrow=10)
        digit, colour = judge(x, classify)
        dig_ok, col_ok = digit == want_digit, colour == want_colour
        rows = [("all", dig_ok, col_ok)]
        print(f"\nguidance {w:g} ({secs:.0f} s, NFE {nfe})")
        if args.per_group or len(args.guidance) == 1:
            rows += [(f"colour {c}", dig_ok[want_colour == k], col_ok[want_colour == k]) for k, c in enumerate(COLOURS)]
            rows += [(f"digit {d}", dig_ok[want_digit == d], col_ok[want_digit == d]) for d in range(10)]
        print(table(rows))
        summary.append((f"w = {w:g}", dig_ok, col_ok))
        published.append([f"{w:g}", str(args.num), f"{dig_ok.double().mean():.1%}", f"{col_ok.double().mean():.1%}",
                          f"{(dig_ok & col_ok).double().mean():.1%}", str(nfe), f"{secs:.0f}"])
    if len(args.guidance) > 1:
        print("\noverall by guidance scale")
        print(table(summary))
    if args.write_results:
        write_table("text", "text-both-right", f"`{run.run_dir}` (training seed {run.config.train.seed}), "
                    f"{args.templates} captions, {args.sampler} {args.steps} steps, sampling seed {args.seed}\n\n"
                    + markdown_table(["w", "samples", "digit right", "colour right", "both right", "NFE", "seconds"],
                                     published))


if __name__ == "__main__":
    main()
