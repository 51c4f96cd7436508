"""The README says only what a test keeps true: every `denoiselab` command in it parses through
the real argument parser, and its Python block runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from denoiselab.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def commands() -> list[str]:
    lines = [line.split("  #")[0].strip() for block in blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith("denoiselab ")]


def test_the_readme_shows_commands():
    assert len(commands()) >= 10


@pytest.mark.parametrize("line", commands())
def test_every_readme_command_parses(line):
    argv = shlex.split(line)[1:]
    if argv == ["--help"]:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 0
        return
    args = build_parser().parse_args(argv)
    assert callable(args.fn), line


def test_the_readme_python_block_runs(tmp_path, monkeypatch):
    (code,) = blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert (tmp_path / "runs" / "swiss" / "checkpoint.safetensors").exists()


def test_the_package_face_is_documented_first():
    """`help(denoiselab)` shows how to use it, not a list of modules; the licence the metadata names is there."""
    import denoiselab

    assert "denoiselab.train(" in denoiselab.__doc__ and "denoiselab.load(" in denoiselab.__doc__
    assert callable(denoiselab.load) and callable(denoiselab.train) and denoiselab.Run.__name__ == "Run"
    licence = (README.parent / "LICENSE").read_text()
    assert licence.startswith("MIT License") or "Permission is hereby granted" in licence
