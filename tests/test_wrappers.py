"""Denoiser wrappers: one base (``denoiser.DenoiserWrapper``) for guidance, edit composites and the
NFE counter, each a denoiser on its inner denoiser's time axis that refuses the paths around it."""

import copy

import pytest
import torch

from denoiselab.denoiser import ConditionalMixtureDenoiser, Denoiser, DenoiserWrapper
from denoiselab.device import module_device
from denoiselab.editing import AnagramDenoiser, HybridDenoiser, get_view
from denoiselab.editing.core import denoise_from
from denoiselab.errors import DenoiselabError
from denoiselab.guidance import ClassifierFreeGuidance, ClassifierGuidance
from denoiselab.samplers import SAMPLERS, get_sampler
from denoiselab.samplers.api import CountingDenoiser, generate
from denoiselab.schedules import make_schedule

F64 = torch.float64


@pytest.fixture(scope="module")
def mixture():
    return ConditionalMixtureDenoiser(make_schedule("cosine", 1000), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]),
                                      torch.tensor([0.3, 0.2]), torch.tensor([0.4, 0.6]))


def _wrappers(inner):
    return [ClassifierFreeGuidance(inner, 3.0), ClassifierGuidance(inner, inner.log_class_probs, 1.0),
            AnagramDenoiser(inner, [get_view("identity"), get_view("negate")], [None, None]),
            HybridDenoiser(inner, torch.tensor([0]), torch.tensor([1])), CountingDenoiser(inner)]


def test_every_wrapper_is_a_denoiser_wrapper_on_its_inner_time_axis(mixture):
    sigma = torch.tensor([0.5, 2.0], dtype=F64)
    for w in _wrappers(mixture):
        assert isinstance(w, DenoiserWrapper) and w.inner is mixture
        assert w.schedule is mixture.schedule and w.parameterization == "x0" and w.clip_x0 is None
        assert w.sigma_range == mixture.sigma_range and w.time_range == mixture.time_range
        torch.testing.assert_close(w.t_from_sigma(sigma), mixture.t_from_sigma(sigma), rtol=0, atol=0)
        a, s = w.scales(torch.tensor(300.0, dtype=F64), torch.empty(1, dtype=F64))
        torch.testing.assert_close((a, s), mixture.scales(torch.tensor(300.0, dtype=F64), torch.empty(1, dtype=F64)))
        for name in ("raw", "from_output", "net"):  # each would reach the network past the wrapper
            with pytest.raises(AttributeError, match=name):
                getattr(w, name)
        assert not hasattr(w, "no_such_attribute")


def test_delegation_is_read_at_each_access_and_through_nested_wrappers(mixture):
    inner = ConditionalMixtureDenoiser(mixture.schedule, mixture.means, mixture.variances, mixture.weights)
    outer = CountingDenoiser(HybridDenoiser(ClassifierFreeGuidance(inner, 2.0), None, None))
    assert outer.schedule is inner.schedule and outer.time_range == inner.time_range
    inner.clip_x0 = 1.0
    assert outer.clip_x0 == 1.0


def _wrappers_of_plain(den):
    return [ClassifierFreeGuidance(den, 2.0), AnagramDenoiser(den, [get_view("identity")], [None]),
            HybridDenoiser(den, None, None), CountingDenoiser(den)]


def test_wrappers_copy_and_lead_module_device_to_the_network():
    # A network on the meta device: found only by walking .inner down to .net, never the CPU default.
    den = Denoiser(torch.nn.Linear(2, 2, device="meta"), make_schedule("linear", 1000), "eps")
    for w in _wrappers_of_plain(den):
        assert module_device(w) == torch.device("meta")
        twin = copy.copy(w)  # copy probes dunders on a bare instance: no recursion into a missing inner
        assert twin.inner is den and twin.schedule is den.schedule


def test_counting_denoiser_counts_both_calls_and_changes_nothing(mixture):
    counting = CountingDenoiser(mixture)
    x = torch.randn(5, 2, dtype=F64)
    t = torch.full((5,), 400.0, dtype=F64)
    for got, want in zip(counting(x, t), mixture(x, t)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for got, want in zip(counting.unclipped(x, t), mixture.unclipped(x, t)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert counting.nfe == 2
    _, nfe = generate(ClassifierFreeGuidance(mixture, 2.0), 4, (2,), sampler="dpmpp-2m", steps=7, cond=torch.tensor([0, 1, 0, 1]))
    assert nfe == 7


def test_get_sampler_is_the_registry_and_names_the_choices(mixture):
    assert all(get_sampler(name) is fn for name, fn in SAMPLERS.items())
    with pytest.raises(DenoiselabError, match="unknown sampler 'ddpm2': choose one of ddpm, ddim"):
        get_sampler("ddpm2")
    x = torch.zeros(2, 2)
    for run in (lambda: generate(mixture, 2, (2,), sampler="ddpm2", steps=3),
                lambda: denoise_from(mixture, x, 500.0, sampler="ddpm2", steps=3)):
        with pytest.raises(DenoiselabError, match="unknown sampler 'ddpm2': choose one of"):
            run()
