"""``python -m denoiselab.presets --write-readme [README.md]``: regenerate the README's preset table
from the TOML files (tests/test_presets.py fails while the two differ); with no flag, print it."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import markdown_table, readme_with_table


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m denoiselab.presets", description=__doc__)
    ap.add_argument("--write-readme", nargs="?", const="README.md", default=None, metavar="README",
                    help="replace the table between the README's preset markers (default README.md)")
    args = ap.parse_args()
    if args.write_readme is None:
        print(markdown_table())
        return 0
    path = Path(args.write_readme)
    text = path.read_text(encoding="utf-8")
    new = readme_with_table(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"{path}: preset table {'rewritten' if new != text else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
