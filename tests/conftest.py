import os

import pytest
import torch

# Deterministic, small thread pool: the suite runs on 2-core machines.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _small_level_search(monkeypatch):
    """Every 2D student `denoiselab distill` makes searches its sampling levels; in the suite that
    search is shrunk (test_distill.py checks the full-size one's parts on their own)."""
    import denoiselab.runs.distill as d

    monkeypatch.setattr(d, "LEVEL_CANDIDATES", 4)
    monkeypatch.setattr(d, "MAX_LEVEL_STEPS", 3)
    monkeypatch.setattr(d, "SEARCH_POINTS", 256)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of thousands of tiny tensor ops: a thread pool only adds overhead."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A 2D run small enough to train in a second: the students' teachers.
POINTS_TINY = ["--set", "data.num=4096", "--set", "model.width=32", "--set", "model.depth=2", "--set", "steps=30",
               "--set", "batch_size=64", "--set", "log_every=10", "--no-pictures"]


def one_error_line(capsys, argv) -> str:
    """Run the CLI on ``argv``, which must fail with exit 2 and exactly one error line; returns it."""
    from denoiselab.cli import main

    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("denoiselab: error:"), err
    return err[0]


def train_tiny(tmp_path_factory, folder: str, name: str, preset: str, *args: str):
    """A run trained by `denoiselab train --preset PRESET ... --quiet ARGS` in a fresh temp folder."""
    from denoiselab.cli import main

    out = tmp_path_factory.mktemp(folder) / name
    assert main(["train", "--preset", preset, "--out", str(out), "--quiet", *args]) == 0
    return out
