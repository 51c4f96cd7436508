"""Presets as data: one TOML file per family in this folder, each preset a ``[presets.NAME]`` table
with its ``source`` (a paper, a course, or the results page that measured it), a one-line
``summary`` and its config written out in full (no inheritance: what a preset is can be read in
one place). Loading is strict (``RunConfig.from_dict``): an unknown key is an error naming it.

``--preset`` takes a name from these files or a path to a user's own file in the same format:
``mine.toml`` when it holds one preset, ``mine.toml:NAME`` to choose one of several.
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import SECTIONS, RunConfig, unknown_key
from ..errors import DenoiselabError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package (tomllib is tomli, adopted in 3.11)
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
# The family files, in the order `denoiselab presets` and the README list them.
FAMILIES = ("toy2d", "mnist", "cs180", "folders", "flows", "emoji")
README_BEGIN, README_END = "<!-- presets:begin -->", "<!-- presets:end -->"
PRESET_KEYS = ("source", "summary", *SECTIONS)


@dataclass(frozen=True)
class Preset:
    """One ``[presets.NAME]`` table: where it comes from, what it is, and its settings."""
    name: str
    family: str                       # the file's stem: toy2d, mnist, ...
    source: str
    summary: str
    settings: dict                    # the sections as written; ``config()`` builds a fresh RunConfig

    def config(self) -> RunConfig:
        # A deep copy per call: options dicts are mutable, and no caller may change the preset.
        return RunConfig.from_dict({"preset": self.name, **copy.deepcopy(self.settings)})


def read_toml(path: Path) -> dict:
    """The TOML document at ``path``; one line naming the file and the line on a malformed one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DenoiselabError(f"cannot read preset file {path}: {e.strerror if isinstance(e, OSError) else e}: "
                              f"pass a readable .toml file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends "(at line L, column C)".
        raise DenoiselabError(f"{path} is not valid TOML: {e}: fix that line") from None


def read_presets(path: Path, family: str = "") -> dict[str, Preset]:
    """Every preset in the TOML file at ``path``, checked strictly (unknown keys are errors)."""
    doc = read_toml(path)
    for key in doc:
        if key != "presets" and difflib.get_close_matches(key, ["presets"], n=1):  # [preset.NAME]
            raise unknown_key(key, ["presets"], str(path), "table")
        if key != "presets":
            raise DenoiselabError(f"unknown key {key} in {path}: a preset file holds [presets.NAME] tables only")
    tables = doc.get("presets")
    if not isinstance(tables, dict) or not tables:
        raise DenoiselabError(f"{path} holds no preset: write one as a [presets.NAME] table (copy one from the "
                              f"files `denoiselab presets` names)")
    found = {}
    for name, table in tables.items():
        where = f"preset {name} ({path})"
        if not isinstance(table, dict):
            raise DenoiselabError(f"presets.{name} in {path} must be a table: write it as [presets.{name}]")
        for key in table:
            if key not in PRESET_KEYS:
                raise unknown_key(f"presets.{name}.{key}", [f"presets.{name}.{k}" for k in PRESET_KEYS], str(path),
                                  "key")
        for key in ("source", "summary"):
            if not isinstance(table.get(key, ""), str):
                raise DenoiselabError(f"{key} of {where} must be a string")
        settings = {k: v for k, v in table.items() if k in SECTIONS}
        RunConfig.from_dict(settings, where)  # strict: name a bad key now, not when the preset is used
        found[name] = Preset(name, family or Path(path).stem, table.get("source", ""), table.get("summary", ""),
                             settings)
    return found


def load_preset_file(path: str | Path) -> dict[str, RunConfig]:
    """The presets of a TOML file (the shipped ones' format), name -> RunConfig."""
    return {name: p.config() for name, p in read_presets(Path(path)).items()}


def shipped_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for family in FAMILIES:
        for name, preset in read_presets(HERE / f"{family}.toml", family).items():
            if name in presets:
                raise DenoiselabError(f"preset {name} is in both {presets[name].family}.toml and {family}.toml")
            presets[name] = preset
    return presets


# name -> Preset, in the families' order; `name in PRESETS` and `list(PRESETS)` as for any dict.
PRESETS: dict[str, Preset] = shipped_presets()

# A user's file: path.toml, or path.toml:NAME for one of several.
_FILE = re.compile(r"(?P<path>.+\.toml)(?::(?P<name>[^:/\\]+))?", re.IGNORECASE)


def get_preset(name_or_path: str) -> RunConfig:
    """The RunConfig of a shipped preset by name, or of a user's preset file (``mine.toml`` or
    ``mine.toml:NAME``)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path].config()
    m = _FILE.fullmatch(name_or_path)
    if m is None:
        close = difflib.get_close_matches(name_or_path, list(PRESETS), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(PRESETS)}"
        raise DenoiselabError(f"unknown preset {name_or_path!r}: {hint} (`denoiselab presets` lists them; "
                              f"a path to your own .toml file works too)")
    path, name = Path(m["path"]).expanduser(), m["name"]
    if not path.is_file():
        raise DenoiselabError(f"preset file not found: {path} (give a preset name from `denoiselab presets` or "
                              f"the path of a .toml file)")
    presets = read_presets(path)
    if name is None:
        if len(presets) > 1:
            raise DenoiselabError(f"{path} holds {len(presets)} presets ({', '.join(presets)}): choose one with "
                                  f"--preset {path}:NAME")
        name = next(iter(presets))
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=3, cutoff=0.5) or list(presets)
        raise DenoiselabError(f"{path} holds no preset {name!r}: choose one of {', '.join(close)}")
    return presets[name].config()


def listing() -> list[str]:
    """`denoiselab presets`: one line per preset, NAME  summary (source), grouped under the path of
    their family's file (a user's own preset starts as a copy of one)."""
    width = max(map(len, PRESETS))
    lines: list[str] = []
    for family in FAMILIES:
        lines += ([""] if lines else []) + [f"# {HERE / family}.toml"]
        lines += [f"{p.name:{width}s}  {p.summary} ({p.source})" for p in PRESETS.values() if p.family == family]
    return lines


def markdown_table() -> str:
    """The README's preset table, generated from the files: presets next to each other with the same
    summary and source (the six 2D sets) share a row; a results page in a source becomes a link."""
    rows: list[tuple[list[str], str, str]] = []
    for p in PRESETS.values():
        if rows and rows[-1][1:] == (p.summary, p.source):
            rows[-1][0].append(p.name)
        else:
            rows.append(([p.name], p.summary, p.source))
    out = ["| preset | what | source |", "| --- | --- | --- |"]
    for names, summary, source in rows:
        linked = re.sub(r"\b(docs/[\w./-]+\.md)\b", r"[\1](\1)", source)
        out.append(f"| {', '.join(f'`{n}`' for n in names)} | {summary} | {linked} |")
    return "\n".join(out)


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the preset markers replaced by :func:`markdown_table`."""
    if README_BEGIN not in readme or README_END not in readme:
        raise DenoiselabError(f"the README has no {README_BEGIN} ... {README_END} markers: add them where the "
                              f"preset table goes")
    head, rest = readme.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    return f"{head}{README_BEGIN}\n{markdown_table()}\n{README_END}{tail}"
