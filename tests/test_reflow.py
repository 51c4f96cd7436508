"""Reflow students (Liu et al. 2023): on Gaussian data the teacher's coupling has a closed form, its
straight velocity is a fixed point of the reflow loss and one Euler step along it is the teacher's
map; the pairs are the teacher's own samples; and the command."""

import pytest
import torch
from torch import nn

from conftest import POINTS_TINY, one_error_line, train_tiny
from denoiselab.cli import main
from denoiselab.denoiser import ConsistencyDenoiser, FlowDenoiser
from denoiselab.losses import ReflowObjective
from denoiselab.process import FLOW_TIME_SCALE
from denoiselab.rng import SampleNoise
from denoiselab.samplers.api import generate
from denoiselab.samplers.common import initial_noise

MU, SD = 0.7, 0.5  # 1-D data N(MU, SD^2)


class StraightFlow(nn.Module):
    """The velocity of the straight paths z -> MU + theta z: along x = tau (MU + theta z) + (1 - tau) z
    the velocity is MU + (theta - 1) z, with z = (x - tau MU) / (1 + tau (theta - 1)).

    In one dimension every flow's ODE map is increasing, so a flow from N(0, 1) to N(MU, SD^2) maps
    z to its quantile MU + SD z: theta = SD is the straight flow of the teacher's own coupling."""

    def __init__(self, theta: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=torch.float64))

    def forward(self, x, t, cond=None):
        tau = (t.double() / FLOW_TIME_SCALE).view(-1, *[1] * (x.ndim - 1))
        z = (x - tau * MU) / (1 + tau * (self.theta - 1))
        return MU + (self.theta - 1) * z


def gaussian_pairs(n=4096):
    z = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return z, MU + SD * z


def reflow_loss(theta):
    z, x1 = gaussian_pairs()
    net = StraightFlow(theta)
    loss = ReflowObjective(z, x1, FLOW_TIME_SCALE)(net, x1, None, torch.Generator().manual_seed(1))
    loss.backward()
    return float(loss.detach()), float(net.theta.grad)


def test_the_straight_flow_of_the_teachers_coupling_is_a_fixed_point_of_the_reflow_loss():
    loss, grad = reflow_loss(SD)
    assert loss < 1e-24 and abs(grad) < 1e-12
    for theta in (0.3, 0.8):  # a wrong coupling: a positive loss whose gradient points back to SD
        loss, grad = reflow_loss(theta)
        assert loss > 1e-4 and (theta - 1e-2 * grad - SD) ** 2 < (theta - SD) ** 2


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_euler_on_the_straight_flow_draws_the_teachers_map_in_any_number_of_steps(steps):
    den = FlowDenoiser(StraightFlow(SD).requires_grad_(False), FLOW_TIME_SCALE)
    x, nfe = generate(den, 512, (1,), sampler="euler", steps=steps, grid="uniform", seed=3)
    z = initial_noise(SampleNoise(3, 512, 0), 512, (1,)).double()
    assert nfe == steps
    torch.testing.assert_close(x.double(), MU + SD * z, rtol=0, atol=1e-5)


def test_a_curved_flow_needs_its_steps_where_the_straight_one_does_not():
    """The 1-rectified flow of N(0, 1) -> N(MU, SD^2) data (independent coupling) has the velocity
    E[x1 - z | x_tau], curved paths; one Euler step along it lands off the teacher's map."""

    class Curved(nn.Module):
        def forward(self, x, t, cond=None):
            tau = (t.double() / FLOW_TIME_SCALE).view(-1, 1)
            var = tau**2 * SD**2 + (1 - tau) ** 2  # x_tau = tau x1 + (1 - tau) z with x1, z independent
            x0_hat = MU + tau * SD**2 * (x - tau * MU) / var
            return (x0_hat - x) / (1 - tau).clamp_min(1e-12)

    den = FlowDenoiser(Curved(), FLOW_TIME_SCALE)
    z = initial_noise(SampleNoise(3, 512, 0), 512, (1,)).double()
    one, _ = generate(den, 512, (1,), sampler="euler", steps=1, grid="uniform", seed=3)
    many, _ = generate(den, 512, (1,), sampler="heun", steps=64, grid="uniform", seed=3)
    torch.testing.assert_close(many.double(), MU + SD * z, rtol=0, atol=1e-3)  # the ODE map is the quantile map
    assert (one.double() - (MU + SD * z)).abs().max() > 0.1


# -- the command ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_teacher(tmp_path_factory):
    return train_tiny(tmp_path_factory, "reflow", "flow", "swiss-roll-flow", *POINTS_TINY)


def reflow(teacher, out, *args):
    return main(["distill", str(teacher), "--out", str(out), "--method", "reflow", "--quiet", "--no-pictures",
                 "--set", "log_every=5", "--set", "distill.pairs=512", *args])


def test_a_reflow_student_is_a_flow_trained_on_its_teachers_pairs(flow_teacher, tmp_path):
    import numpy as np

    from denoiselab import runs
    from denoiselab.runs.distill import PAIRS, REFLOW_GRID, REFLOW_STEPS

    student = tmp_path / "student"
    assert reflow(flow_teacher, student, "--set", "steps=20") == 0
    run, teacher = runs.load_run(student), runs.load_run(flow_teacher)
    assert isinstance(run.denoiser, FlowDenoiser) and not isinstance(run.denoiser, ConsistencyDenoiser)
    assert (run.config.sample.sampler, run.config.sample.steps, run.config.sample.grid) == (
        "euler", REFLOW_STEPS, REFLOW_GRID)
    assert run.config.distill.teacher == str(flow_teacher)
    # The pairs: x_T ~ N(0, I) from the student's seed, and the teacher's own ODE sample from it.
    pairs = torch.load(student / PAIRS, weights_only=True)
    seed, steps = run.config.train.seed, teacher.config.sample.steps
    assert torch.equal(pairs["noise"], initial_noise(SampleNoise(seed, 512, 0), 512, (2,)))
    x1, _ = generate(teacher.denoiser, 512, (2,), sampler="heun", steps=steps, seed=seed)
    torch.testing.assert_close(pairs["samples"], x1)
    for k in ("1", "2"):
        assert main(["sample", str(student), "--num", "64", "--steps", k, "--out", str(tmp_path / f"s{k}.npy")]) == 0
    assert np.load(tmp_path / "s1.npy").shape == (64, 2)
    assert main(["evaluate", str(tmp_path / "s1.npy"), "--ref", "data:swiss-roll", "--num", "64"]) == 0
    assert main(["report", str(student)]) == 0 and "student of" in (student / "report.html").read_text()
    # A reflow student is a flow, so it can be reflowed again (a 3-rectified flow).
    assert main(["distill", str(student), "--out", str(tmp_path / "again"), "--method", "reflow", "--dry-run"]) == 0


def test_resuming_a_reflow_is_exact_and_keeps_its_pairs(flow_teacher, tmp_path):
    from denoiselab import runs
    from denoiselab.runs.distill import PAIRS, distill_parts, student_config

    cfg = student_config(flow_teacher, "reflow", ["steps=12", "train.ckpt_every=0", "distill.pairs=256"])
    data = runs.build_data(cfg)

    def trainer(out):
        net, obj = distill_parts(cfg, data, out=out)
        return runs.make_trainer(cfg, out, data, progress=False, net=net, objective=obj)

    whole = trainer(tmp_path / "whole")
    whole.fit()
    cut = trainer(tmp_path / "cut")
    cut.fit(until=5)
    stamp = (tmp_path / "cut" / PAIRS).stat().st_mtime_ns
    again = trainer(tmp_path / "cut")
    assert again.resume() and again.step == 5
    assert (tmp_path / "cut" / PAIRS).stat().st_mtime_ns == stamp  # read back, not drawn again
    again.fit()
    for a, b in zip(whole.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)


def test_reflow_of_a_diffusion_run_gets_one_line_and_nothing_is_written(tmp_path_factory, tmp_path, capsys):
    vp = train_tiny(tmp_path_factory, "reflow", "vp", "swiss-roll", *POINTS_TINY)
    capsys.readouterr()
    line = one_error_line(capsys, ["distill", vp, "--out", tmp_path / "s", "--method", "reflow"])
    assert "reflow retrains a flow" in line and "--method cd" in line and not (tmp_path / "s").exists()


def test_consistency_distillation_of_a_reflow_student_gets_one_line(flow_teacher, tmp_path, capsys):
    student = tmp_path / "student"
    assert reflow(flow_teacher, student, "--set", "steps=3") == 0
    capsys.readouterr()
    for method in ("cd", "ct"):
        line = one_error_line(capsys, ["distill", student, "--out", tmp_path / method, "--method", method])
        assert "reflow student" in line and not (tmp_path / method).exists()
