"""`denoiselab import diffusers PATH --out RUN` and `denoiselab export diffusers RUN --out DIR`:
runs to and from diffusers folders on disk (``runs.diffusers_io``, ``runs.diffusers_export``)."""

from __future__ import annotations

from pathlib import Path

from ..io import log


def cmd_import(args) -> int:
    from ..runs.diffusers_io import import_diffusers

    out = import_diffusers(Path(args.path), Path(args.out), prompts=args.prompts, allow_pickle=args.allow_pickle)
    log(f"imported {args.path} as the run {out}: sample it with `denoiselab sample {out} --num 16 --out samples.png`")
    return 0


def cmd_export(args) -> int:
    from ..runs.diffusers_export import export_diffusers

    out = export_diffusers(Path(args.run_dir), Path(args.out))
    log(f"exported {args.run_dir} to {out}: diffusers loads it with DDPMPipeline.from_pretrained({str(out)!r})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="turn a diffusers folder on disk into a run (nothing is downloaded)")
    p.add_argument("format", choices=["diffusers"], help="the folder's format: diffusers")
    p.add_argument("path", help="a diffusers folder: a pipeline (model_index.json, unet/, scheduler/) or a UNet's "
                                "folder with its scheduler_config.json")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="UNet2DConditionModel: the prompt dictionary (.safetensors, or .pt/.pth with --allow-pickle) "
                        "from prompt to embedding, e.g. CS180's T5 embeddings for DeepFloyd IF stage I")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also read pickled files (.bin, .pt, .pth, .ckpt; tensors only): a pickle can run code when "
                        "loaded, so pass this only for files you trust")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("export", help="write a run as a diffusers folder that DDPMPipeline.from_pretrained loads")
    p.add_argument("format", choices=["diffusers"], help="the folder's format: diffusers")
    p.add_argument("run_dir", help="a run whose network is diffusers-unet2d (trained with that model, or imported)")
    p.add_argument("--out", required=True, help="the new diffusers folder")
    p.set_defaults(fn=cmd_export)
