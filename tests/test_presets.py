"""Presets as data: the TOML files, their strict loader, a user's own file, `denoiselab presets`
and the README's table generated from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from denoiselab.cli import main
from denoiselab.config import RunConfig
from denoiselab.errors import DenoiselabError
from denoiselab.presets import FAMILIES, HERE, PRESETS, get_preset, load_preset_file, readme_with_table

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_table_is_generated_from_the_preset_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, (
        "the README's preset table differs from what the preset files generate: run "
        "`python -m denoiselab.presets --write-readme` from the repository root and commit README.md")


def test_every_preset_has_a_source_and_a_one_line_summary():
    assert len(PRESETS) >= 21
    for name, p in PRESETS.items():
        assert p.source.strip() and p.summary.strip(), f"{name} needs a source and a summary"
        assert "\n" not in p.summary and "|" not in p.summary + p.source, name  # one line, one table cell
        assert get_preset(name).preset == name


def test_each_family_file_starts_with_a_comment_header():
    for family in FAMILIES:
        first = (HERE / f"{family}.toml").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), f"{family}.toml must start with a comment naming its family and sources"


def test_presets_are_written_out_in_full_and_fresh_per_call():
    # No inheritance: mnist-class states the mnist recipe itself.
    assert PRESETS["mnist-class"].settings["train"] == PRESETS["mnist"].settings["train"]
    a = get_preset("mnist")
    a.model.options["ch"] = 1  # a caller changing its copy leaves the preset alone
    assert get_preset("mnist").model.options["ch"] == 40


def test_from_dict_is_strict_and_names_the_closest_key():
    with pytest.raises(DenoiselabError, match=r"unknown setting train\.stesp in config: did you mean train\.steps\?"):
        RunConfig.from_dict({"train": {"stesp": 3}})
    with pytest.raises(DenoiselabError, match=r"unknown section trian in config: did you mean train\?"):
        RunConfig.from_dict({"trian": {}})
    with pytest.raises(DenoiselabError, match=r"train\.sampler .*did you mean sample\.sampler\?"):
        RunConfig.from_dict({"train": {"sampler": "ddim"}})


def test_every_config_this_version_writes_loads_back_as_it_was():
    for name in PRESETS:
        cfg = get_preset(name)
        assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    old = RunConfig().to_dict()
    old["sample"] = {"sampler": "ddim", "steps": 50, "spacing": "trailing"}  # an older run's config.json
    assert RunConfig.from_dict(old).sample.spacing == "trailing"


def test_a_whole_number_in_a_float_setting_is_that_float():
    cfg = RunConfig.from_dict({"sample": {"guidance": 3}, "train": {"lr": 1}})
    assert type(cfg.sample.guidance) is float and type(cfg.train.lr) is float


USER = """
[presets.tiny-moons]
source = "a test"
summary = "moons, a few steps"

[presets.tiny-moons.data]
name = "moons"
num = 512

[presets.tiny-moons.model]
name = "mlp"

[presets.tiny-moons.model.options]
width = 16
depth = 1

[presets.tiny-moons.train]
steps = 7
lr = 2e-3
"""


def test_a_user_preset_file_round_trips_through_train_dry_run(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(USER)
    assert main(["train", "--preset", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(load_preset_file(path)["tiny-moons"].to_json()) == json.loads(get_preset(str(path)).to_json())
    assert printed["preset"] == "tiny-moons" and printed["model"]["options"] == {"width": 16, "depth": 1}
    assert (printed["data"]["name"], printed["train"]["steps"], printed["train"]["lr"]) == ("moons", 7, 2e-3)


def test_a_file_of_several_presets_needs_a_name(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(USER + '\n[presets.other.train]\nsteps = 5\n')
    with pytest.raises(DenoiselabError, match="holds 2 presets .*two.toml:NAME"):
        get_preset(str(path))
    assert get_preset(f"{path}:other").train.steps == 5
    with pytest.raises(DenoiselabError, match="no preset 'othr': choose one of other"):
        get_preset(f"{path}:othr")


@pytest.mark.parametrize("text, match", [
    ('[presets.a]\nsummary = "unterminated\n', r"bad\.toml is not valid TOML: .*line 2"),
    ("[presets.a.train]\nstesp = 3\n", r"unknown setting train\.stesp in preset a \(.*bad\.toml\): did you mean train\.steps\?"),
    ('[presets.a]\nsumary = "x"\n', r"unknown key presets\.a\.sumary in .*did you mean presets\.a\.summary\?"),
    ('name = "x"\n', r"unknown key name in .*\[presets\.NAME\] tables"),
    ("", r"holds no preset"),
])
def test_a_bad_preset_file_is_one_line_naming_the_file(tmp_path, capsys, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DenoiselabError, match=match):
        get_preset(str(path))
    assert main(["train", "--preset", str(path), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.toml" in err and "Traceback" not in err


def test_an_unknown_preset_name_lists_the_closest(tmp_path, capsys):
    with pytest.raises(DenoiselabError, match="unknown preset 'mnsit': did you mean mnist"):
        get_preset("mnsit")
    with pytest.raises(DenoiselabError, match="preset file not found"):
        get_preset(str(tmp_path / "nothere.toml"))
    assert main(["train", "--preset", "swiss-rol", "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean swiss-roll" in err


def test_denoiselab_presets_lists_every_preset_by_family(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert listed == list(PRESETS)
    headers = [line for line in lines if line.startswith("# ")]
    assert [Path(h[2:]).stem for h in headers] == list(FAMILIES)
    kaist = next(line for line in lines if line.startswith("kaist "))
    assert kaist.split(None, 1)[1] == f"{PRESETS['kaist'].summary} ({PRESETS['kaist'].source})"
