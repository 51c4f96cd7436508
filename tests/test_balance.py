"""Class-balanced batches (data.balance): each class drawn in proportion to N_c^(1 - balance), a
pure function of (seed, step), and one line for unlabelled data."""

import pytest
import torch

from denoiselab.cli import main
from denoiselab.data import TensorData


def skewed(balance: float) -> TensorData:
    y = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    return TensorData(x=torch.randn(1000, 2), y=y, num_classes=2, balance=balance)


@pytest.mark.parametrize("balance, share", [(0.0, 0.9), (0.5, 0.75), (1.0, 0.5)])
def test_a_class_is_drawn_in_proportion_to_its_size_to_the_power_one_minus_balance(balance, share):
    data = skewed(balance)
    drawn = torch.cat([data.batch(step, 500, seed=3)[1] for step in range(40)])
    # 20,000 draws: the share of class 0 within 4 standard errors of N_0^(1-b) / sum_c N_c^(1-b)
    assert abs(float((drawn == 0).double().mean()) - share) < 4 * (share * (1 - share) / len(drawn)) ** 0.5 + 1e-9


def test_balanced_batches_are_a_pure_function_of_seed_and_step():
    a, b = skewed(1.0), skewed(1.0)
    assert torch.equal(a.batch_index(7, 64, 1), b.batch_index(7, 64, 1))
    assert not torch.equal(a.batch_index(7, 64, 1), a.batch_index(8, 64, 1))
    assert not torch.equal(a.batch_index(7, 64, 1), a.batch_index(7, 64, 2))


def test_balance_on_unlabelled_data_gets_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--set", "steps=2",
                 "--set", "data.balance=1", "--no-pictures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.balance" in err[0] and "no labels" in err[0], err
    assert not out.exists()


def test_balance_trains_a_class_conditional_run(tmp_path):
    from denoiselab import runs

    out = tmp_path / "run"
    assert main(["train", "--preset", "mnist-class", "--out", str(out), "--quiet", "--no-pictures",
                 "--set", "data.name=digits", "--set", "model.image_size=8", "--set", "model.patch=1",
                 "--set", "model.ch=8", "--set", "model.ch_mult=[1]", "--set", "model.attn_resolutions=[]",
                 "--set", "model.groups=4", "--set", "steps=2", "--set", "batch_size=8",
                 "--set", "preview_every=0", "--set", "data.balance=0.5"]) == 0
    assert runs.load_run(out).config.data.balance == 0.5
