"""Our DPM-Solver++ (2M, 3M and 2M SDE) against diffusers' ``DPMSolverMultistepScheduler`` on the same
trained model, the same grid and the same starting noise: the largest difference between the
two sets of samples (target: below 1e-4). Our 3M is compared in its default, reference form
(``exact=0``: the second difference at the weight diffusers gives it; see
``samplers.dpm_solver._third_order_differences``).

diffusers is a benchmark-only peer (``pip install -e .[bench]``); it is imported here and
nowhere else. Both run the network at the same integer timesteps: diffusers' own "linspace"
and "trailing" spacings, and a Karras (rho 7) grid rounded to integer steps, passed to
diffusers as custom timesteps.

    python benchmarks/dpm_solver_diffusers.py RUN_DIR [--num 2048]

``--write-results`` writes the table into docs/results/samplers.md, section
``diffusers-agreement`` (``diffusers-agreement-float64`` with ``--float64``):

    python benchmarks/dpm_solver_diffusers.py runs/swiss --write-results
    python benchmarks/dpm_solver_diffusers.py runs/swiss --float64 --write-results
"""

from __future__ import annotations

import argparse
import sys

import torch

from denoiselab import runs
from denoiselab.rng import SampleNoise
from denoiselab.samplers import SAMPLERS, initial_noise, randn, time_grid
from results import add_write_flag, markdown_row, markdown_table, write_table

PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


class _Float64Torch:
    """``torch`` as diffusers' scheduler module sees it in the float64 comparison: its step()
    upcasts the sample "to float32" (a downcast from float64, rounding every step to float32,
    which the ODE then amplifies); here float32 means float64 and everything else is torch."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def diffusers_sample(run, x_T: torch.Tensor, timesteps: list[int], order: int, sde_noise=None) -> torch.Tensor:
    """diffusers' solver on our network; ``sde_noise(i, like)`` (the SDE variant) hands step i the
    same standard normal draw our sampler takes, through ``step(variance_noise=...)``."""
    import diffusers.schedulers.scheduling_dpmsolver_multistep as module
    from diffusers import DPMSolverMultistepScheduler

    module.torch = _Float64Torch() if x_T.dtype == torch.float64 else torch

    den = run.denoiser
    sched = DPMSolverMultistepScheduler(num_train_timesteps=den.schedule.T, trained_betas=den.schedule.betas.numpy(),
                                        solver_order=order,
                                        algorithm_type="sde-dpmsolver++" if sde_noise else "dpmsolver++",
                                        prediction_type=PREDICTION[den.parameterization], final_sigmas_type="zero",
                                        lower_order_final=True, thresholding=False)
    sched.set_timesteps(timesteps=timesteps)
    if x_T.dtype == torch.float64:
        # diffusers keeps its sigma table in float32; in the float64 comparison give it the exact
        # float64 sigmas of the same timesteps, so only the two algorithms differ.
        sig = den.schedule.sigmas[torch.tensor(timesteps)]
        sched.sigmas = torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
    x = x_T.clone()
    for i, t in enumerate(sched.timesteps):
        out = den.raw(x, torch.full((x.shape[0],), float(t)))
        extra = {"variance_noise": sde_noise(i, x)} if sde_noise else {}
        x = sched.step(out, t, x, **extra).prev_sample
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--num", type=int, default=2048)
    ap.add_argument("--steps", nargs="+", type=int, default=[10, 20])
    ap.add_argument("--float64", action="store_true",
                    help="run the network and both solvers in float64 (isolates the algorithms from float32 rounding, "
                         "which the ODE amplifies for points between the arms of the roll)")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        import diffusers
    except ImportError:
        sys.exit("diffusers is not installed: pip install -e .[bench]")
    run = runs.load_run(args.run_dir)
    if run.denoiser.schedule is None:
        sys.exit("diffusers' DPMSolverMultistepScheduler needs a VP model")
    x_T = initial_noise(SampleNoise(0, args.num), args.num, run.sample_shape)
    run64 = runs.load_run(args.run_dir)
    run64.net.double()
    # diffusers' solver has no x0 clipping (its "thresholding" is the dynamic kind), so an image
    # model's clip is switched off on our side too: both run the bare network.
    run.denoiser.clip_x0 = run64.denoiser.clip_x0 = None
    if args.float64:
        run, x_T = run64, x_T.double()
    # The float32 floor: our own solver in float32 against itself in float64. The probability-flow
    # ODE amplifies rounding for points that start between two arms of the roll, so the largest
    # difference of any two float32 implementations cannot be much below it.
    header = ["solver", "grid", "steps", "max abs diff", "mean abs diff", "float32 floor (max)", "sample scale (std)"]
    print(markdown_table(header, []))
    rows, worst = [], 0.0
    for steps in args.steps:
        grids = {
            "linspace": time_grid(run.denoiser, "linspace", steps + 1)[:-1],  # diffusers drops t = 0
            "trailing": time_grid(run.denoiser, "trailing", steps),
            "karras (rounded)": time_grid(run.denoiser, "karras", steps).round().long(),
        }
        for name, ts in grids.items():
            ts_list = [int(t) for t in ts]
            for order, solver in ((2, "dpmpp-2m"), (3, "dpmpp-3m"), (2, "dpmpp-2m-sde")):
                # The SDE solver draws step i's noise as stream i + 1 of the run's per-sample noise.
                noise = SampleNoise(0, args.num) if solver.endswith("sde") else None
                sde_noise = (lambda i, like: randn(noise, i + 1, like)) if noise else None
                ours = SAMPLERS[solver](run.denoiser, x_T, torch.tensor(ts_list), noise=noise)
                theirs = diffusers_sample(run, x_T, ts_list, order, sde_noise)
                ours64 = SAMPLERS[solver](run64.denoiser, x_T.double(), torch.tensor(ts_list), noise=noise)
                d = (ours - theirs).abs()
                floor = "n/a" if args.float64 else f"{(ours.double() - ours64).abs().max().item():.2e}"
                worst = max(worst, d.max().item())
                rows.append([solver, name, len(ts_list), f"{d.max().item():.2e}", f"{d.mean().item():.2e}", floor,
                             f"{ours.std().item():.3f}"])
                print(markdown_row(rows[-1]), flush=True)
    summary = (f"worst max abs difference {worst:.2e} (target 1e-4); diffusers {diffusers.__version__}, "
               f"torch {torch.__version__}, model {run.config.preset} ({run.denoiser.parameterization}), "
               f"{'float64' if args.float64 else 'float32'}")
    print(f"\n{summary}")
    if args.write_results:
        write_table("samplers", "diffusers-agreement-float64" if args.float64 else "diffusers-agreement",
                    f"{markdown_table(header, rows)}\n\n{summary}")


if __name__ == "__main__":
    main()
