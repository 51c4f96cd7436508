"""Never lose a run, never crash on bad input: exact resume (weights, EMA, optimizer, LR
schedule, data order, every RNG), corrupt and truncated checkpoints, SIGTERM, NaN, a full disk,
file modes, train --resume semantics, and a sample of the malformed inputs of
benchmarks/reliability.py (the full table runs there)."""

import errno
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from denoiselab import runs
from denoiselab.cli import main
from denoiselab.config import apply_overrides
from denoiselab.errors import DenoiselabError
from denoiselab.presets import get_preset
from denoiselab.training import checkpoint as C
from denoiselab.training.guards import TrainingInterrupted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reliability as R  # noqa: E402

# A class-conditional UNet with dropout (torch's global RNG), label dropout (the trainer's
# generator), EMA, warm-up and cosine decay (the LR schedule), on 6 images so that the data
# order crosses many epoch boundaries.
TINY_IMG = ["model.ch=8", "model.groups=4", "model.dropout=0.1",
            "steps=12", "batch_size=4", "warmup=3", "log_every=2", "preview_every=0", "ckpt_every=2",
            "keep_checkpoints=3", "threads=1"]


def image_cfg(*extra):
    return apply_overrides(get_preset("mnist-class"), TINY_IMG + list(extra))


def trainer(cfg, out):
    data = runs.build_data(cfg)
    data.x, data.y = data.x[:6], data.y[:6]  # 12 steps x 4 images = 8 epochs of 6: many boundaries
    return runs.make_trainer(cfg, out, data, progress=False)


def everything(tr) -> dict:
    """Every tensor a checkpoint of this trainer holds."""
    path = tr.run_dir / C.LATEST
    ck = C.load_checkpoint(path)
    flat = {f"model.{k}": v for k, v in ck["model"].items()}
    flat.update({f"ema.{k}": v for k, v in ck["ema"].items()})
    for i, st in ck["optimizer"]["state"].items():
        flat.update({f"opt.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    flat.update({f"rng.{k}": v for k, v in ck["rng"].items()})
    flat["rng.generator"] = ck["rng_state"]
    return flat


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "full"
    tr = trainer(image_cfg(), out)
    tr.fit()
    return everything(tr)


def test_resume_after_many_interruptions_is_bit_identical(tmp_path, uninterrupted):
    cfg = image_cfg()
    out = tmp_path / "part"
    for stop in (1, 4, 5, 9):  # a stop between checkpoints loses the steps since the last one
        tr = trainer(cfg, out)
        tr.resume()
        torch.manual_seed(1234 + stop)  # the caller's global RNG must not leak into training
        tr.fit(until=stop)
    tr = trainer(cfg, out)
    assert tr.resume() and tr.step == 9
    tr.fit()
    assert_same(everything(tr), uninterrupted)
    # The kept checkpoints: the newest 3, the public file a link to the newest.
    assert [s for s, _ in C.history(out)] == [12, 10, 9]  # 9: where the last interruption saved
    assert os.path.samefile(out / C.LATEST, C.history(out)[0][1])
    # metrics.jsonl holds each logged step once, in order.
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) == list(range(2, 13, 2))


def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path, uninterrupted, capsys):
    cfg = image_cfg()
    out = tmp_path / "run"
    trainer(cfg, out).fit(until=8)
    newest = C.history(out)[0][1]
    os.truncate(newest, newest.stat().st_size - 1)  # also truncates checkpoint.safetensors (a link)
    logged = []
    tr = trainer(cfg, out)
    tr.log = logged.append
    assert tr.resume() and tr.step == 6
    assert len(logged) == 1 and "corrupt" in logged[0] and "step 6" in logged[0]
    tr.fit()
    assert_same(everything(tr), uninterrupted)


@pytest.mark.parametrize("where", ["tensors", "header"])
def test_a_flipped_bit_is_detected(tmp_path, where):
    net = torch.nn.Linear(3, 2)
    path = tmp_path / "c.safetensors"
    C.save_checkpoint(path, model=net, config={"a": 1}, step=3)
    raw = bytearray(path.read_bytes())
    header = int.from_bytes(raw[:8], "little")
    # In the header: the step 3 becomes 2, still valid JSON; only the hash can tell.
    i = 8 + header + 5 if where == "tensors" else raw.index(b'step\\": 3') + len(b'step\\": ')
    raw[i] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(C.CorruptCheckpoint):
        C.load_checkpoint(path)


def test_sigterm_saves_a_loadable_checkpoint_then_stops(tmp_path, uninterrupted):
    cfg = image_cfg()
    out = tmp_path / "run"
    tr = trainer(cfg, out)
    batch = tr.data.batch

    def batch_then_signal(step, *a):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step ends, then the save
        return batch(step, *a)

    tr.data.batch = batch_then_signal
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 5") as e:
        tr.fit()
    assert e.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers handed back
    assert C.load_checkpoint(out / C.LATEST)["step"] == 5
    tr = trainer(cfg, out)
    tr.resume()
    tr.fit()
    assert_same(everything(tr), uninterrupted)


def test_nan_loss_names_the_step_and_the_last_good_checkpoint(tmp_path):
    cfg = image_cfg()
    out = tmp_path / "run"
    tr = trainer(cfg, out)
    objective = tr.objective
    tr.objective = lambda net, x0, cond, g: objective(net, x0, cond, g) * (float("nan") if tr.step == 6 else 1.0)
    with pytest.raises(DenoiselabError, match=r"loss became nan at step 6: .*step0000006.safetensors \(step 6\)"):
        tr.fit()
    assert C.history(out)[0][0] == 6  # nothing after the bad step was saved


def test_full_disk_fails_cleanly_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = image_cfg()
    out = tmp_path / "run"
    trainer(cfg, out).fit(until=4)
    before = {p.name: p.read_bytes() for p in (out / C.HISTORY).iterdir()}
    latest = (out / C.LATEST).read_bytes()

    def full(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)  # half a file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "save_file", full)
    tr = trainer(cfg, out)
    tr.resume()
    with pytest.raises(DenoiselabError, match="disk full while writing the checkpoint of step 6.*step0000004"):
        tr.fit()
    assert {p.name: p.read_bytes() for p in (out / C.HISTORY).iterdir()} == before
    assert (out / C.LATEST).read_bytes() == latest
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        C.atomic_write(tmp_path / "f.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_stale_temp_files_are_removed_on_resume(tmp_path):
    out = tmp_path / "run"
    trainer(image_cfg(), out).fit(until=2)
    junk = [out / ".checkpoint.safetensors.abc.tmp", out / C.HISTORY / ".step0000004.safetensors.x1.tmp"]
    for p in junk:
        p.write_bytes(b"half")
    tr = trainer(image_cfg(), out)
    tr.resume()
    assert not any(p.exists() for p in junk)


TINY2D = ["--set", "data.num=1024", "--set", "model.width=16", "--set", "model.depth=1", "--set", "steps=6",
          "--set", "batch_size=16", "--set", "log_every=3", "--quiet", "--no-pictures"]


def test_train_resume_starts_continues_and_refuses_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--preset", "swiss-roll", "--out", str(out), "--resume", *TINY2D]
    assert main(argv) == 0  # nothing there: starts the run
    assert "holds no checkpoint yet: starting" in capsys.readouterr().err
    ck = C.load_checkpoint(out / C.LATEST)
    assert ck["step"] == 6
    assert main(argv) == 0  # finished: nothing to train, the same checkpoint
    assert C.load_checkpoint(out / C.LATEST)["step"] == 6
    assert main(argv + ["--set", "steps=9"]) == 0  # a run may be extended
    assert "train.steps 6 -> 9" in capsys.readouterr().err
    assert C.load_checkpoint(out / C.LATEST)["step"] == 9
    assert main(["train", "--preset", "moons", "--out", str(out), "--resume", *TINY2D]) == 2
    err = capsys.readouterr().err
    assert "another config (preset is 'swiss-roll' in the run, 'moons' asked" in err
    only_config = tmp_path / "killed-early"
    only_config.mkdir()
    (only_config / "config.json").write_text((out / "config.json").read_text())
    assert main(["train", "--out", str(only_config), "--resume", "--quiet", "--no-pictures"]) == 0
    assert C.load_checkpoint(only_config / C.LATEST)["step"] == 9


def test_ambiguous_name_and_path(tmp_path, monkeypatch):
    from denoiselab.cli.checks import resolve_data_ref

    monkeypatch.chdir(tmp_path)
    assert resolve_data_ref("mnist") == ("data", "mnist")
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DenoiselabError, match="ambiguous.*data:mnist.*./mnist"):
        resolve_data_ref("mnist")
    assert resolve_data_ref("data:mnist") == ("data", "mnist")
    assert resolve_data_ref("./mnist") == ("path", "mnist")


# One case in three of the benchmark's table, plus the ones the issue names.
NAMED = {"--num 0", "--out .txt", "--ref both a data set and ./mnist", "every checkpoint truncated",
         "samples a pickled object array", "--resume with another preset"}
SAMPLE = [c for i, c in enumerate(R.CASES) if i % 3 == 0 or c.what in NAMED]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sandbox")
    fx = R.make_fixtures(tmp)
    return fx


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: f"{c.command}: {c.what}")
def test_malformed_input_gives_one_line_and_touches_no_file(sandbox, case, monkeypatch):
    monkeypatch.chdir(sandbox["tmp"])
    r = R.run_case(case, sandbox)
    assert r["ok"], (r["rc"], r["lines"], r["files"])


def test_npy_is_read_without_pickle(tmp_path):
    from denoiselab.io import load_npy

    np.save(tmp_path / "o.npy", np.array([object()] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DenoiselabError, match="pickle"):
        load_npy(tmp_path / "o.npy", "samples")
    np.save(tmp_path / "f.npy", np.ones((4, 2), np.float32))
    assert load_npy(tmp_path / "f.npy", "samples", ndims=(2,)).shape == (4, 2)
