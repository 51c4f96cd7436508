"""`denoiselab presets`: every preset, one line each."""

from __future__ import annotations

from ..config import PRESETS


def cmd_presets(args) -> int:
    width = max(map(len, PRESETS))
    for name in PRESETS:
        doc = (PRESETS[name].__doc__ or "").strip().split(".")[0].replace("\n", " ")
        print(f"{name:{width}s}  {' '.join(doc.split())}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list every preset, one line each")
    p.set_defaults(fn=cmd_presets)
