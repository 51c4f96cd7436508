"""Labelled and captioned image folders (metadata.csv / metadata.jsonl, the Hugging Face imagefolder
convention): parsing, the class and caption data sets, and one clear line for every bad input."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from denoiselab.cli import main
from denoiselab.data import build_dataset
from denoiselab.data.captioned import TextImageData
from denoiselab.data.metadata import load_metadata_folder, read_metadata
from denoiselab.errors import DenoiselabError

ROWS = [("a/red.png", "fire", "a red square"), ("a/blue.png", "water", "a blue square"),
        ("b/green.png", "grass", "a green square"), ("b/red2.png", "fire", "another red square")]
COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "red2": (200, 0, 0)}


def fake_encode(texts, cache_dir=None):
    """A deterministic stand-in for the sentence encoder: 384 numbers from each text's hash."""
    return torch.stack([torch.tensor(list(hashlib.sha256(t.encode()).digest()) * 12, dtype=torch.float32)[:384] / 255
                        for t in texts])


def write_images(root):
    for name, _, _ in ROWS:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), COLOURS[path.stem]).save(path)


def write_csv(root, rows=ROWS, header="file_name,type,text"):
    lines = [header] + [",".join(f'"{v}"' for v in r) for r in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def folder(tmp_path):
    write_images(tmp_path)
    write_csv(tmp_path)
    return tmp_path


def test_csv_and_jsonl_parse_to_the_same_rows(tmp_path, folder):
    cols, rows = read_metadata(folder / "metadata.csv")
    assert cols == ["file_name", "type", "text"]
    assert [r.line for r in rows] == [2, 3, 4, 5]
    assert rows[2].values == {"file_name": "b/green.png", "type": "grass", "text": "a green square"}
    j = tmp_path / "j"
    j.mkdir()
    (j / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f, "type": t, "text": c, "n": 3})
                                                for f, t, c in ROWS) + "\n\n", encoding="utf-8")
    jcols, jrows = read_metadata(j / "metadata.jsonl")
    assert jcols == ["file_name", "type", "text", "n"]
    assert [r.values["type"] for r in jrows] == [r.values["type"] for r in rows] and jrows[0].values["n"] == "3"


def test_label_column_gives_classes_in_file_order(folder):
    x, y, classes, caps = load_metadata_folder(folder, image_size=8, label_column="type")
    assert x.shape == (4, 3, 8, 8) and caps is None
    assert classes == ("fire", "grass", "water")
    assert y.tolist() == [0, 2, 1, 0]
    # Pixels come from the file each row names: the blue square is blue.
    assert torch.allclose(x[1, :, 4, 4], torch.tensor([-1.0, -1.0, 1.0]))
    data = build_dataset("folder", {"path": str(folder), "label_column": "type", "image_size": 8, "flip": True})
    assert data.num_classes == 3 and data.class_names == classes and data.hflip


def test_caption_column_trains_text_conditional(folder):
    data = build_dataset("folder", {"path": str(folder), "caption_column": "text", "image_size": 8},
                         encode=fake_encode)
    assert isinstance(data, TextImageData) and data.y is None
    assert data.captions == tuple(r[2] for r in ROWS)
    x, cond = data.batch(5, 3, seed=1)
    index = data.batch_index(5, 3, 1)
    assert torch.equal(cond, fake_encode([ROWS[int(i)][2] for i in index]))  # each image its own caption
    assert torch.equal(data.null_cond, fake_encode([""])[0])
    x2, cond2 = data.batch(5, 3, seed=1)
    assert torch.equal(x, x2) and torch.equal(cond, cond2)
    # Both columns: captions condition the model, labels stay for evaluation.
    both = build_dataset("folder", {"path": str(folder), "caption_column": "text", "label_column": "type",
                                    "image_size": 8}, encode=fake_encode)
    assert both.num_classes == 3 and both.y.tolist() == [0, 2, 1, 0]


def test_without_columns_a_metadata_folder_is_a_plain_folder(folder):
    data = build_dataset("folder", {"path": str(folder), "image_size": 8})
    assert len(data) == 4 and data.class_names == ("a", "b")  # labels from the sub-folders, as before


def bad(tmp_path, what, **opts):
    with pytest.raises(DenoiselabError) as e:
        build_dataset("folder", {"path": str(tmp_path), "image_size": 8, **opts}, encode=fake_encode)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file(folder):
    (folder / "b" / "green.png").unlink()
    msg = bad(folder, "missing", label_column="type")
    assert "metadata.csv line 4" in msg and "b/green.png not found" in msg


def test_missing_column(folder):
    msg = bad(folder, "column", label_column="colour")
    assert "no column 'colour'" in msg and "file_name, type, text" in msg and "data.label_column" in msg
    msg = bad(folder, "column", caption_column="caption")
    assert "no column 'caption'" in msg and "data.caption_column" in msg
    write_csv(folder, header="path,type,text")
    assert "no file_name column" in bad(folder, "file_name", label_column="type")


def test_image_that_does_not_decode(folder):
    (folder / "a" / "blue.png").write_bytes(b"not a png at all")
    msg = bad(folder, "decode", label_column="type")
    assert "metadata.csv line 3" in msg and "a/blue.png is not a readable image" in msg


def test_empty_caption_and_empty_label(folder):
    rows = list(ROWS)
    rows[1] = ("a/blue.png", "water", "  ")
    write_csv(folder, rows)
    msg = bad(folder, "caption", caption_column="text")
    assert "metadata.csv line 3 (a/blue.png)" in msg and "caption in column 'text' is empty" in msg
    rows[1] = ("a/blue.png", "", "a blue square")
    write_csv(folder, rows)
    assert "label in column 'type' is empty" in bad(folder, "label", label_column="type")


def test_malformed_metadata_files(folder):
    (folder / "metadata.csv").write_text('file_name,type\n"a/red.png",fire\n"a/blue.png",water,extra\n')
    assert "metadata.csv line 3: 3 fields, but the header has 2" in bad(folder, "fields", label_column="type")
    (folder / "metadata.jsonl").write_text('{"file_name": "a/red.png"}\n')
    assert "both metadata.csv and metadata.jsonl" in bad(folder, "both", label_column="type")
    (folder / "metadata.csv").unlink()
    (folder / "metadata.jsonl").write_text('{"file_name": "a/red.png", "type": "fire"}\n{"file_name": \n')
    assert "metadata.jsonl line 2 is not valid JSON" in bad(folder, "json", label_column="type")
    (folder / "metadata.jsonl").write_text('{"file_name": "a/red.png", "type": "fire"}\n["a/blue.png"]\n')
    assert "metadata.jsonl line 2 is not a JSON object" in bad(folder, "object", label_column="type")
    (folder / "metadata.jsonl").unlink()
    assert "needs a metadata.csv or metadata.jsonl" in bad(folder, "none", label_column="type")


def test_cli_exits_2_with_one_line_and_writes_nothing(folder, tmp_path_factory, capsys):
    (folder / "b" / "green.png").unlink()
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(["train", "--preset", "folder-class", "--out", str(out), "--quiet", "--no-pictures",
                 "--set", f"data.path={folder}", "--set", "data.label_column=type", "--set", "data.image_size=8",
                 "--set", "steps=1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and "metadata.csv line 4" in err[0] and "b/green.png" in err[0]
    assert not out.exists()


def test_limit_keeps_the_first_rows(folder):
    x, y, classes, _ = load_metadata_folder(folder, image_size=8, label_column="type", limit=2)
    assert len(x) == 2 and classes == ("fire", "water") and np.array_equal(y.numpy(), [0, 1])
