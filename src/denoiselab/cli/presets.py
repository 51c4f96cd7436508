"""`denoiselab presets`: every preset, one line each (NAME  summary (source)), grouped by the
family file it lives in (denoiselab/presets/*.toml)."""

from __future__ import annotations

from ..presets import listing


def cmd_presets(args) -> int:
    print("\n".join(listing()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list every preset, one line each")
    p.set_defaults(fn=cmd_presets)
