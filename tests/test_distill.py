"""Consistency students: the boundary condition, the closed-form flow map on Gaussian data as a
fixed point of the distillation loss, the teacher's ODE step, the curriculum, and the command."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import POINTS_TINY, one_error_line, train_tiny
from denoiselab.cli import main
from denoiselab.config import DistillConfig
from denoiselab.denoiser import AnalyticGaussianDenoiser, ConsistencyDenoiser, Denoiser, FlowDenoiser
from denoiselab.errors import DenoiselabError
from denoiselab.losses import ConsistencyObjective, curriculum_levels, pseudo_huber
from denoiselab.process import scales
from denoiselab.samplers import ode_step, sample_heun
from denoiselab.schedules import make_schedule

MU, VAR = 0.7, 0.25  # 1-D Gaussian data N(MU, VAR)
SCHED = make_schedule("linear", 1000)


def exact_flow_map(x, sigma, sigma_min):
    """The probability-flow ODE of N(MU, VAR) data in the VE frame z = x / a: dz/dsigma = (z - E[x0|z]) / sigma
    with E[x0|z] = MU + VAR / (VAR + sigma^2) (z - MU), so (z - MU) / sqrt(VAR + sigma^2) is constant along a
    trajectory, and its end at sigma_min is f(z, sigma) = MU + (z - MU) sqrt(VAR + sigma_min^2) / sqrt(VAR + sigma^2)."""
    return MU + (x - MU) * ((VAR + sigma_min**2) / (VAR + sigma**2)).sqrt()


class ExactStudent(nn.Module):
    """A network whose student f is the exact flow map raised to a learnable power theta along the
    trajectory: theta = 1 is the true consistency function."""

    def __init__(self, theta: float, sigma_min: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=torch.float64))
        self.sigma_min = sigma_min
        self.wrap = None  # the ConsistencyDenoiser around this net, for its coefficients

    def forward(self, x, t, cond=None):
        a, s = scales(SCHED, t.double(), x)
        sigma = s / a
        ratio = ((VAR + self.sigma_min**2) / (VAR + sigma**2)).sqrt()
        f = MU + (x / a - MU) * ratio**self.theta
        skip_over_a, out = self.wrap.coefficients(t.double(), x)
        return torch.where(out > 0, (f - skip_over_a * x) / out.clamp_min(1e-300), torch.zeros_like(x))


def student_of(net, sigma_min):
    den = ConsistencyDenoiser(Denoiser(net, SCHED, "x0"), sigma_min)
    net.wrap = den
    return den


@pytest.mark.parametrize("c_out", ["lcm", "complement"])
def test_the_boundary_condition_is_exact_at_sigma_min(c_out):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))
    torch.manual_seed(0)
    x = torch.randn(8, 4, dtype=torch.float64)
    vp = Denoiser(lambda x, t, c: net.double()(x) * 5, SCHED, "eps")
    lo = vp.sigma_range[0]
    student = ConsistencyDenoiser(vp, lo, c_out=c_out)
    x0, _ = student(x, torch.zeros(8, dtype=torch.float64))
    a, _ = scales(SCHED, torch.zeros(8, dtype=torch.float64), x)
    torch.testing.assert_close(x0, x / a, rtol=1e-15, atol=0)  # a rounding of x / a, no more
    flow = ConsistencyDenoiser(FlowDenoiser(lambda x, t, c: net.double()(x)), 0.002, c_out=c_out)
    tau = flow.t_from_sigma(torch.tensor(0.002, dtype=torch.float64))
    x0, _ = flow(x, tau.expand(8))
    torch.testing.assert_close(x0, x / tau, rtol=1e-12, atol=0)
    # Far from the boundary f is the network's own estimate, and it is finite at pure noise.
    x0_far, _ = flow(x, torch.zeros(8, dtype=torch.float64))
    assert torch.isfinite(x0_far).all()


def test_the_two_c_outs_agree_away_from_the_boundary():
    vp = Denoiser(lambda x, t, c: x, SCHED, "x0")
    lcm, comp = (ConsistencyDenoiser(vp, 0.01, c_out=c) for c in ("lcm", "complement"))
    like = torch.zeros(3, 1, dtype=torch.float64)
    for sigma, close in ((0.02, False), (5.0, True)):
        t = SCHED.t_from_sigma(torch.tensor(sigma, dtype=torch.float64)).expand(3)
        (skip_l, out_l), (skip_c, out_c) = lcm.coefficients(t, like), comp.coefficients(t, like)
        a, _ = scales(SCHED, t, like)
        assert torch.equal(skip_l, skip_c) and torch.allclose(skip_c * a + out_c, torch.ones_like(out_c))
        assert torch.allclose(out_l, out_c, rtol=1e-3) == close
    with pytest.raises(DenoiselabError, match="c_out"):
        ConsistencyDenoiser(vp, 0.01, c_out="edm")


def test_ode_step_is_one_heun_step_of_the_sampler():
    den = AnalyticGaussianDenoiser(SCHED, torch.tensor([MU]), torch.tensor([VAR]))
    x = torch.randn(16, 1, dtype=torch.float64) * 3
    steps = []
    sample_heun(den, x, torch.tensor([700.0, 400.0], dtype=torch.float64), callback=lambda d: steps.append(d))
    ours = ode_step(den, x, torch.full((16,), 700.0, dtype=torch.float64), torch.full((16,), 400.0, dtype=torch.float64))
    torch.testing.assert_close(ours, steps[0]["x_next"], rtol=1e-10, atol=1e-12)


def test_curriculum_doubles_from_start_to_end():
    levels = [curriculum_levels(k, 1000, 10, 80) for k in range(1000)]
    assert levels[0] == 11 and levels[-1] == 81
    assert levels == sorted(levels) and set(levels) == {11, 21, 41, 81}


def test_pseudo_huber_is_quadratic_small_and_linear_large():
    d = torch.tensor([[1e-4], [100.0]])
    out = pseudo_huber(d, 0.01)
    torch.testing.assert_close(out[0], torch.tensor(0.5e-8 / 0.01), rtol=1e-3, atol=0)
    torch.testing.assert_close(out[1], torch.tensor(100.0 - 0.01), rtol=1e-6, atol=0)


def objective_for(net, steps=1, levels=640):
    sigma_min = Denoiser(None, SCHED).sigma_range[0]
    teacher = AnalyticGaussianDenoiser(SCHED, torch.tensor([MU]), torch.tensor([VAR]))
    d = DistillConfig(method="cd", levels_start=levels, levels_end=levels, target_decay=0.0)
    return ConsistencyObjective(d, steps, lambda n: student_of(n, sigma_min), teacher, (sigma_min, 20.0), net=net)


def loss_and_grad(theta):
    sigma_min = Denoiser(None, SCHED).sigma_range[0]
    net = ExactStudent(theta, sigma_min)
    obj = objective_for(net)
    x0 = MU + math.sqrt(VAR) * torch.randn(4096, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss = obj(net, x0, None, torch.Generator().manual_seed(2))
    loss.backward()
    return loss.item(), net.theta.grad.item()


def test_the_exact_consistency_function_is_a_fixed_point_of_the_loss():
    loss1, grad1 = loss_and_grad(1.0)
    loss2, grad2 = loss_and_grad(1.3)
    # Zero up to the teacher's Heun error over 640 levels.
    assert loss1 < 1e-3 * loss2 and abs(grad1) < 1e-3 * abs(grad2), (loss1, grad1, loss2, grad2)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))

    def forward(self, x, t, cond=None):
        a, s = scales(SCHED, t.double(), x)
        feats = torch.cat([x / (a * (1 + (s / a) ** 2).sqrt()), (s / a).log(), torch.ones_like(x)], 1)
        return self.body(feats)


def flow_map_error(net, sigma_min):
    student = ConsistencyDenoiser(Denoiser(net, SCHED, "x0"), sigma_min)
    errs = []
    with torch.no_grad():
        for sigma in (0.2, 1.0, 5.0):
            t = SCHED.t_from_sigma(torch.tensor(sigma, dtype=torch.float64))
            a, _ = scales(SCHED, t, torch.zeros(1, 1))
            z = torch.linspace(-3, 3, 64, dtype=torch.float64)[:, None] * math.sqrt(VAR + sigma**2) + MU
            f = student(a * z, t.expand(64))[0]
            exact = exact_flow_map(z, torch.tensor(sigma, dtype=torch.float64), sigma_min)
            errs.append((f - exact).pow(2).mean())
    return float(sum(errs) / 3)


def test_a_few_distillation_steps_lower_the_loss_towards_the_exact_function():
    sigma_min = Denoiser(None, SCHED).sigma_range[0]
    net = ExactStudent(1.3, sigma_min)
    obj = objective_for(net, levels=80)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(15):
        x0 = MU + math.sqrt(VAR) * torch.randn(1024, 1, dtype=torch.float64, generator=g)
        loss = obj(net, x0, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(net.theta.item() - 1) < 0.5 * 0.3 and losses[-1] < 0.5 * losses[0], (net.theta.item(), losses)


def test_a_small_student_trained_on_the_analytic_teacher_moves_towards_the_flow_map():
    torch.manual_seed(0)
    sigma_min = Denoiser(None, SCHED).sigma_range[0]
    net = SmallNet().double()
    obj = objective_for(net, steps=300, levels=40)
    before = flow_map_error(net, sigma_min)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        obj.begin_step(step)
        x0 = MU + math.sqrt(VAR) * torch.randn(256, 1, dtype=torch.float64, generator=g)
        loss = obj(net, x0, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        obj.end_step(net)
    after = flow_map_error(net, sigma_min)
    assert after < 0.5 * before, (before, after)


# -- the command ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return train_tiny(tmp_path_factory, "distill", "teacher", "swiss-roll", *POINTS_TINY)


def distill(teacher, out, *args):
    return main(["distill", str(teacher), "--out", str(out), "--quiet", "--no-pictures", "--set", "log_every=5", *args])


def test_a_student_is_a_run_like_any_other(teacher, tmp_path):
    student = tmp_path / "student"
    assert distill(teacher, student, "--set", "steps=20") == 0
    from denoiselab import runs

    run = runs.load_run(student)
    assert isinstance(run.denoiser, ConsistencyDenoiser) and run.config.distill.teacher == str(teacher)
    assert run.config.sample.sampler == "consistency"
    # Its first step maps x_T to a clean sample, so it starts from the data's moments, as ODE
    # solvers do; `--start gaussian` still gives N(0, I).
    assert runs.sampling_plan(run).start_moments() is not None
    assert runs.sampling_plan(run, start="gaussian").start_moments() is None
    for k in ("1", "2", "4"):
        assert main(["sample", str(student), "--num", "64", "--steps", k, "--out", str(tmp_path / f"s{k}.npy")]) == 0
    # The checkpoint round-trips: a second load draws the same samples for the same seed.
    assert main(["sample", str(student), "--num", "64", "--steps", "1", "--out", str(tmp_path / "again.npy")]) == 0
    import numpy as np

    assert np.array_equal(np.load(tmp_path / "s1.npy"), np.load(tmp_path / "again.npy"))
    assert main(["evaluate", str(tmp_path / "s1.npy"), "--ref", "data:swiss-roll", "--num", "64"]) == 0
    assert main(["report", str(student)]) == 0 and "student of" in (student / "report.html").read_text()


def test_resuming_a_distillation_is_exact(teacher, tmp_path):
    from denoiselab import runs
    from denoiselab.runs.distill import distill_parts, student_config

    cfg = student_config(teacher, "cd", ["steps=12", "distill.target_decay=0.9", "train.ckpt_every=0"])
    data = runs.build_data(cfg)

    def trainer(out):
        net, obj = distill_parts(cfg, data)
        return runs.make_trainer(cfg, out, data, progress=False, net=net, objective=obj)

    whole = trainer(tmp_path / "whole")
    whole.fit()
    cut = trainer(tmp_path / "cut")
    cut.fit(until=5)
    again = trainer(tmp_path / "cut")
    assert again.resume() and again.step == 5
    again.fit()
    for a, b in zip(whole.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(whole.objective.target.state_dict().values(), again.objective.target.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_input_gets_one_line_and_nothing_is_written(teacher, tmp_path, tmp_path_factory, capsys):
    student = tmp_path / "student"
    assert distill(teacher, student, "--set", "steps=3") == 0
    capsys.readouterr()
    line = one_error_line(capsys, ["distill", student, "--out", tmp_path / "s2"])
    assert "already a student" in line and not (tmp_path / "s2").exists()
    line = one_error_line(capsys, ["distill", teacher, "--out", tmp_path / "s3", "--set", "steps=0"])
    assert "train.steps" in line and not (tmp_path / "s3").exists()
    line = one_error_line(capsys, ["sample", student, "--steps", "0", "--out", tmp_path / "x.npy"])
    assert "steps" in line and not (tmp_path / "x.npy").exists()
    denoiser = train_tiny(tmp_path_factory, "distill", "denoiser", "cs180-denoiser", "--set", "steps=2",
                          "--set", "batch_size=8", "--no-pictures")
    capsys.readouterr()
    line = one_error_line(capsys, ["distill", denoiser, "--out", tmp_path / "s4"])
    assert "single-step denoiser" in line and not (tmp_path / "s4").exists()
    line = one_error_line(capsys, ["distill", tmp_path / "nothing", "--out", tmp_path / "s5"])
    assert "not found" in line and not (tmp_path / "s5").exists()
    assert not Path(tmp_path / "s3").exists()


IMAGE_TINY = ["--set", "data.name=digits", "--set", "model.image_size=8", "--set", "model.patch=1",
              "--set", "model.ch=8", "--set", "model.ch_mult=[1]", "--set", "model.attn_resolutions=[]",
              "--set", "model.groups=4", "--set", "steps=2", "--set", "batch_size=8", "--set", "log_every=1",
              "--set", "preview_every=0", "--no-pictures"]


def test_a_class_conditional_student_learns_the_guided_flow_and_edits_in_its_own_steps(tmp_path_factory, tmp_path,
                                                                                        capsys):
    import numpy as np

    from denoiselab import runs

    teacher = train_tiny(tmp_path_factory, "distill", "digits", "mnist-class", *IMAGE_TINY)
    student = tmp_path / "student"
    assert distill(teacher, student, "--set", "steps=3", "--set", "batch_size=8", "--set", "preview_every=0") == 0
    cfg = runs.load_run(student).config
    assert cfg.distill.teacher_guidance == runs.load_run(teacher).config.sample.guidance != 1.0
    assert cfg.sample.guidance == 1.0  # the guidance is in the student's weights
    out = tmp_path / "x.npy"
    assert main(["sample", str(student), "--num", "4", "--class", "3", "--steps", "1", "--out", str(out)]) == 0
    assert np.load(out).shape == (4, 1, 8, 8)
    capsys.readouterr()
    assert main(["edit", "sdedit", str(student), "--input", str(out), "--out", str(tmp_path / "sd.npy")]) == 0
    capsys.readouterr()
    assert main(["edit", "inpaint", str(student), "--input", str(out), "--mask-box", "0,0,4,8",
                 "--out", str(tmp_path / "ip.npy")]) == 0
    said = capsys.readouterr()
    assert "(4 solver steps" in said.out + said.err  # the student's own sampler and steps, not DDIM's 50
    assert (tmp_path / "sd_grid.png").is_file() and (tmp_path / "ip_grid.png").is_file()


@pytest.mark.parametrize("steps", [1, 3])
def test_consistency_sampling_with_the_exact_function_draws_the_data(steps):
    """Song et al. 2023, Algorithm 1 with the exact consistency function of N(MU, VAR) data: one jump
    from sigma_max, or three with re-noising, lands on the data distribution (up to sigma_min)."""
    from denoiselab.samplers.api import generate

    sigma_min = Denoiser(None, SCHED).sigma_range[0]
    net = ExactStudent(1.0, sigma_min)
    student = student_of(net, sigma_min)
    n = 4000
    x, nfe = generate(student, n, (1,), sampler="consistency", steps=steps, seed=0, grid="karras",
                      grid_opts={"sigma_min": 0.5, "sigma_max": 80.0})
    x = x.double()
    assert nfe == steps
    assert abs(x.mean().item() - MU) < 5 * math.sqrt(VAR / n)
    assert abs(x.var().item() / VAR - 1) < 0.08


def test_guidance_at_one_scale_per_sample_is_each_sample_at_its_own_scale():
    """The teacher of a w-conditioned student guides each sample at its own w: per-sample scales
    give, row by row, what one scale for the whole batch gives (closed-form mixture denoiser)."""
    from denoiselab.denoiser import ConditionalMixtureDenoiser
    from denoiselab.guidance import guided

    den = ConditionalMixtureDenoiser(SCHED, torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.05, 0.05]),
                                     torch.tensor([0.5, 0.5]))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    t, cond = torch.full((4,), 500.0), torch.tensor([0, 1, 1, 0])
    w = torch.tensor([1.0, 2.5, 4.0, 0.0])
    x0, eps = guided(den, scale=w)(x, t, cond)
    for i, wi in enumerate(w.tolist()):
        x0_i, eps_i = guided(den, scale=wi)(x, t, cond)
        assert torch.allclose(x0[i], x0_i[i], atol=1e-6) and torch.allclose(eps[i], eps_i[i], atol=1e-6)
    assert not torch.allclose(x0[1], guided(den, scale=1.0)(x, t, cond)[0][1])  # w = 2.5 does guide


def test_a_student_that_takes_w_starts_as_its_teacher_at_every_w():
    """The guidance embedding starts at zero: before distillation a w-conditioned network is its
    teacher's conditional network at every w, and the embedding's gradient is not zero."""
    from denoiselab.models import build_model

    teacher = build_model("unet", in_channels=1, image_size=8, ch=8, ch_mult=[1], attn_resolutions=[], groups=4,
                          num_classes=3)
    student = build_model("unet", in_channels=1, image_size=8, ch=8, ch_mult=[1], attn_resolutions=[], groups=4,
                          num_classes=3, guidance_embed=True)
    with torch.no_grad():  # a trained teacher: no layer left at its zero start
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("guidance_emb.") for k in missing)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([10.0, 500.0, 900.0]), torch.tensor([0, 1, 2])
    want = teacher(x, t, y)
    for w in (1.0, 3.0, torch.tensor([0.0, 2.0, 7.5])):
        assert torch.allclose(student(x, t, y, w=torch.as_tensor(w)), want, atol=1e-6)
    student(x, t, y, w=torch.tensor([1.0, 2.0, 3.0])).pow(2).sum().backward()
    assert student.guidance_emb.mlp[2].weight.grad.abs().sum() > 0


def test_a_class_conditional_student_can_take_the_guidance_scale_as_an_input(tmp_path_factory, tmp_path, capsys):
    import numpy as np

    from denoiselab import runs

    teacher = train_tiny(tmp_path_factory, "distill", "digits", "mnist-class", *IMAGE_TINY)
    student = tmp_path / "student"
    assert distill(teacher, student, "--guidance-range", "1", "5", "--set", "steps=4", "--set", "batch_size=8",
                   "--set", "preview_every=0", "--set", "lr=1e-2") == 0
    run = runs.load_run(student)
    cfg = run.config
    assert (cfg.distill.guidance_min, cfg.distill.guidance_max) == (1.0, 5.0)
    assert cfg.model.options["guidance_embed"] is True and run.denoiser.guidance_input
    assert cfg.sample.guidance == runs.load_run(teacher).config.sample.guidance  # sampled at the teacher's w
    outs = {}
    for w in ("1", "4"):
        outs[w] = tmp_path / f"w{w}.npy"
        assert main(["sample", str(student), "--num", "4", "--class", "3", "--steps", "1", "--guidance", w,
                     "--out", str(outs[w])]) == 0
    # One network evaluation per step at any w, and w changes what it draws.
    assert not np.array_equal(np.load(outs["1"]), np.load(outs["4"]))
    capsys.readouterr()
    line = one_error_line(capsys, ["distill", teacher, "--out", tmp_path / "ct", "--method", "ct",
                                   "--guidance-range", "1", "5"])
    assert "--method cd" in line and not (tmp_path / "ct").exists()
    line = one_error_line(capsys, ["distill", teacher, "--out", tmp_path / "empty", "--guidance-range", "5", "1"])
    assert "empty" in line and not (tmp_path / "empty").exists()


def test_an_unconditional_teacher_has_no_guidance_range(teacher, tmp_path, capsys):
    line = one_error_line(capsys, ["distill", teacher, "--out", tmp_path / "s", "--guidance-range", "1", "3"])
    assert "unconditional" in line and not (tmp_path / "s").exists()


def test_the_level_search_finds_the_best_levels_of_a_known_score():
    from denoiselab.runs.distill import level_candidates, search_levels

    cands = level_candidates(0.01, 10.0, 16)
    assert len(cands) == 16 and all(0.01 < c < 10.0 for c in cands) and cands == sorted(cands)
    targets = (0.3, 0.05)
    calls = []

    def score(levels):  # each target is served by its nearest level below the top, in log sigma
        calls.append(levels)
        assert levels == sorted(levels, reverse=True) and levels[0] == 10.0
        below = levels[1:]
        return sum(min((math.log(x / t) ** 2 for x in below), default=25.0) for t in targets)

    found = search_levels(score, 10.0, cands, max_steps=3)
    searched = list(calls)
    nearest = [min(cands, key=lambda c: abs(math.log(c / t))) for t in targets]
    assert found[1][0] == [10.0]
    assert found[2][0] == [10.0, min(cands, key=lambda c: score([10.0, c]))]  # one level serves both: the best single
    assert found[3][0] == [10.0, *nearest]
    assert found[3][1] <= found[2][1] <= found[1][1]
    assert len(searched) == len({tuple(c) for c in searched}) <= 1 + (2 + 3) * len(cands)


def test_the_levels_grid_places_given_levels_and_refuses_bad_ones():
    from denoiselab.samplers.grids import time_grid

    den = Denoiser(nn.Identity(), SCHED, "eps")
    ts = time_grid(den, "levels", 3, sigmas=[5.0, 0.5, 0.05])
    a, s = den.scales(ts, torch.empty(3, dtype=torch.float64))
    assert torch.allclose(s / a, torch.tensor([5.0, 0.5, 0.05], dtype=torch.float64), rtol=1e-6)
    for sigmas, steps, what in (([5.0, 0.5], 3, "2 noise levels for 3 steps"), ([0.5, 5.0], 2, "decreasing"),
                                ([5.0, -1.0], 2, "positive"), (None, 2, "needs its noise levels"),
                                ([1e4, 0.5], 2, "leave the model's range")):
        with pytest.raises(DenoiselabError, match=what):
            time_grid(den, "levels", steps, sigmas=sigmas)


def test_a_2d_student_samples_at_its_measured_levels(teacher, tmp_path, capsys):
    import json

    import numpy as np

    from denoiselab import runs

    student = tmp_path / "student"
    assert distill(teacher, student, "--set", "steps=10") == 0
    record = json.loads((student / runs.LEVELS).read_text())
    assert record["metric"] == "chamfer" and set(record["scores"]) == {"1", "2", "3"}
    for k, v in record["scores"].items():  # a stored level set beats the default grid on the search's score
        assert v <= record["default_grid_scores"][k]
        assert (k in record["levels"]) == (v < record["default_grid_scores"][k])
    run = runs.load_run(student)
    assert runs.sampling_plan(run).steps == record["steps"]
    for k, sigmas in record["levels"].items():
        plan = runs.sampling_plan(run, steps=int(k))
        assert plan.grid == "levels" and plan.grid_opts["sigmas"] == sigmas and "at noise levels" in plan.describe()
        # --sigmas on the command line gives the same draws
        out = [tmp_path / f"{k}{w}.npy" for w in "ab"]
        assert main(["sample", str(student), "--num", "32", "--steps", k, "--out", str(out[0])]) == 0
        assert main(["sample", str(student), "--num", "32", "--sigmas", *map(str, sigmas), "--out", str(out[1])]) == 0
        assert np.array_equal(np.load(out[0]), np.load(out[1]))
    # A named grid is that grid, not the stored levels.
    assert runs.sampling_plan(run, steps=2, grid="logsnr-trailing").grid == "logsnr-trailing"
    capsys.readouterr()
    line = one_error_line(capsys, ["sample", student, "--num", "8", "--sigmas", "0.1", "1.0", "--out",
                                   tmp_path / "bad.npy"])
    assert "decreasing" in line and not (tmp_path / "bad.npy").exists()


def test_an_image_student_measures_its_levels_when_asked(tmp_path_factory, tmp_path, monkeypatch, capsys):
    import json

    import denoiselab.runs.distill as d
    from denoiselab import runs

    def fake_image_score(run, num=None, log=None):  # stands in for domain FID: more steps, levels near 0.5
        def score(levels, grid="levels", grid_opts=None):
            return 10 / len(levels) + sum(math.log(x / 0.5) ** 2 for x in levels[1:]) if grid == "levels" else 100.0
        return score

    monkeypatch.setattr(d, "image_score", fake_image_score)
    teacher = train_tiny(tmp_path_factory, "distill", "plain-digits", "mnist", *IMAGE_TINY)
    tiny = ["--set", "steps=2", "--set", "batch_size=8", "--set", "preview_every=0"]
    student = tmp_path / "student"
    assert distill(teacher, student, *tiny) == 0
    assert not (student / runs.LEVELS).exists()  # image students keep their grid unless asked
    assert distill(teacher, student, "--resume", "--levels", "yes") == 0
    record = json.loads((student / runs.LEVELS).read_text())
    assert record["metric"] == "domain FID" and record["steps"] == 3
    cands = d.level_candidates(max(runs.load_run(student).config.distill.sigma_boundary, 1e-3 * 10),
                               record["levels"]["2"][0], d.IMAGE_LEVEL_CANDIDATES)
    assert record["levels"]["2"][1] == min(cands, key=lambda c: abs(math.log(c / 0.5)))
    assert runs.sampling_plan(runs.load_run(student)).grid == "levels"
    # A class-conditional student is not searched (the score draws unconditional samples).
    conditional = train_tiny(tmp_path_factory, "distill", "digits", "mnist-class", *IMAGE_TINY)
    other = tmp_path / "conditional"
    capsys.readouterr()
    assert distill(conditional, other, *tiny, "--levels", "yes") == 0
    assert not (other / runs.LEVELS).exists() and "no levels measured" in capsys.readouterr().err


def test_a_flow_teachers_student_starts_from_a_level_it_learnt_and_measures_its_levels(tmp_path_factory, tmp_path):
    from denoiselab import runs

    teacher = train_tiny(tmp_path_factory, "distill", "flow-teacher", "swiss-roll-flow", *POINTS_TINY)
    student = tmp_path / "student"
    assert distill(teacher, student, "--set", "steps=5") == 0
    run = runs.load_run(student)
    # not the flow's tau grid, which starts at pure noise (sigma = inf): its top distilled level
    plan = runs.sampling_plan(run, steps=1)
    assert plan.grid == "logsnr-trailing"
    assert 0 < plan.grid_opts["sigma_max"] <= run.config.distill.sigma_top * (1 + 1e-9)
    assert (student / runs.LEVELS).is_file()
