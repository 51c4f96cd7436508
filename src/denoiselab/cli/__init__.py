"""The command line: the only layer that parses argv. One module per command family; the flags
they share live in ``cli.common``."""

from __future__ import annotations

import sys

from .. import __version__
from ..errors import DenoiselabError
from . import demo, distill, edit, evaluate, interop, plot, presets, report, sample, train
from .common import Parser, one_line_warning

# The order of `denoiselab --help`.
COMMANDS = (train, distill, sample, evaluate, plot, edit, demo, report, presets, interop)


def build_parser() -> Parser:
    ap = Parser(prog="denoiselab", description="Train, sample, watch, edit and evaluate diffusion models.")
    ap.add_argument("--version", action="version", version=f"denoiselab {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    for family in COMMANDS:
        family.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    import warnings

    ap = build_parser()
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `--launcher` hands on to the launched processes
    if not getattr(args, "fn", None):
        ap.print_help()
        return 0
    format_before, warnings.formatwarning = warnings.formatwarning, one_line_warning
    try:
        from .checks import check_args

        check_args(args)  # every argument, before any work starts
        if hasattr(args, "device"):
            from ..device import enable_fast_math, resolve_device

            # The one place the device is decided; everything below is handed it.
            args.device = resolve_device(args.device)
            enable_fast_math(args.device)
        return args.fn(args) or 0
    except DenoiselabError as e:
        print(f"denoiselab: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("denoiselab: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_before


if __name__ == "__main__":
    sys.exit(main())
