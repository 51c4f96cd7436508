"""Conditioning a loaded run: which labels to ask for, the guided denoiser, classifier runs.

Between the guidance wrappers (``guidance.py``) and the faces that sample (CLI, pictures,
benchmarks): it decides, once, what ``--class``, ``--guidance``, ``--classifier`` and
``--classifier-scale`` mean for a run, and says in one line what is wrong when they do not fit.

Conventions: the guidance scale w is Ho & Salimans' eps_u + w (eps_c - eps_u), so w = 1 is the
conditional model and w = 0 the unconditional one; a run's default w is its ``sample.guidance``.
A classifier run's ``sample.guidance`` is its default classifier-guidance scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..device import module_device
from ..errors import DenoiselabError
from ..guidance import guided
from .load import LoadedRun, load_run

# The schedule fields a classifier and the run it guides must share: the classifier's t must
# mean the same noise level as the denoiser's.
SCHEDULE_FIELDS = ("schedule", "T", "beta_start", "beta_end", "betas")


def num_classes(run: LoadedRun) -> int:
    """Classes of a class-conditional network (0: unconditional)."""
    return int(run.config.model.options.get("num_classes", 0) or 0)


def is_text(run: LoadedRun) -> bool:
    """A text-conditional network (pooled prompt embeddings, ``model.options.cond_dim``)."""
    return bool(run.config.model.options.get("cond_dim", 0)) and hasattr(run.net, "null_cond")


def text_condition(
    run: LoadedRun, num: int, prompts, negative_prompt: Optional[str] = None, guidance: Optional[float] = None
) -> tuple[object, torch.Tensor]:
    """(denoiser, embeddings) for a text run: sample i gets prompt i mod P; classifier-free guidance
    at ``guidance`` (default: the run's ``sample.guidance``) contrasts against the negative prompt,
    or against the empty prompt, the null condition the run was trained with."""
    cond, uncond = prompt_embeddings(run, prompts, num, negative_prompt)
    scale = run.config.sample.guidance if guidance is None else guidance
    return guided(run.denoiser, scale=scale, uncond=uncond), cond


def prompt_embeddings(run: LoadedRun, prompts, num: int, negative_prompt: Optional[str] = None):
    """(cond, uncond) of ``prompts`` for a text run: from the network's own prompt dictionary where
    it carries one (an imported diffusers model, ``models.diffusers_nets``), else the text encoder."""
    own = getattr(run.net, "prompt_condition", None)
    if own is not None:
        return own(prompts, num, negative_prompt)
    from ..models.text_encoder import prompt_condition

    return prompt_condition(run.net.null_cond, prompts, num, negative_prompt)


def class_labels(num: int, k: int, cls: Optional[int] = None, where: str = "this model",
                 weights: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``cls`` for every sample; when None, 0, 1, ..., k-1, 0, 1, ... (equal numbers of each class),
    or with ``weights`` (a count per class, e.g. the data's) classes in those proportions.

    The proportional order is smooth weighted round-robin: each class gains its weight at every
    sample and the class furthest ahead is drawn and set back by the total, so every prefix of the
    labels is as near the proportions as whole counts allow, and equal weights give the cyclic
    order. Sample i's class depends only on i."""
    if cls is None:
        if weights is None or len(set(int(w) for w in weights)) <= 1:
            return torch.arange(num) % k
        w = torch.as_tensor([int(v) for v in weights], dtype=torch.long)
        if len(w) != k or bool((w < 0).any()) or int(w.sum()) == 0:
            raise DenoiselabError(f"class weights {w.tolist()} for {where}: give {k} counts >= 0, not all 0")
        current, total, out = torch.zeros(k, dtype=torch.long), int(w.sum()), torch.empty(num, dtype=torch.long)
        for i in range(num):
            current += w
            c = int(current.argmax())  # the first of equals: cyclic when the weights are equal
            current[c] -= total
            out[i] = c
        return out
    if not 0 <= int(cls) < k:
        raise DenoiselabError(f"class {cls} is out of range: {where} has {k} classes (0-{k - 1})")
    return torch.full((num,), int(cls), dtype=torch.long)


def load_classifier(run_dir: Union[str, Path], device=None) -> LoadedRun:
    """A noise-aware classifier run (``diffusion.kind = classifier``), ready to guide, on ``device``."""
    clf = load_run(Path(run_dir), device=device)
    if clf.config.diffusion.kind != "classifier":
        raise DenoiselabError(f"{run_dir} is not a classifier run (diffusion kind {clf.config.diffusion.kind!r}): "
                              "train one with `denoiselab train --preset mnist-classifier --out DIR`")
    for p in clf.net.parameters():
        p.requires_grad_(False)  # guidance needs gradients with respect to x_t only
    return clf


def check_classifier(run: LoadedRun, clf: LoadedRun) -> None:
    """The classifier must read x_t at the same noise levels and shape as the run it guides."""
    d, c = run.config.diffusion, clf.config.diffusion
    if d.kind != "vp":
        raise DenoiselabError(f"classifier guidance needs a VP (DDPM-family) run; {run.run_dir} is a {d.kind} run")
    diff = [f"{f} {getattr(c, f)!r} vs {getattr(d, f)!r}" for f in SCHEDULE_FIELDS if getattr(c, f) != getattr(d, f)]
    if diff:
        raise DenoiselabError(f"classifier {clf.run_dir} was trained on another noise schedule than {run.run_dir} "
                              f"({'; '.join(diff)}): train it with the run's schedule (--set diffusion.T=..., ...)")
    if tuple(clf.sample_shape) != tuple(run.sample_shape):
        raise DenoiselabError(f"classifier {clf.run_dir} reads images of shape {clf.sample_shape}, the run makes "
                              f"{run.sample_shape}: train the classifier on the run's data")


def guided_run(run: LoadedRun, num: int, *, cls: Optional[int] = None, guidance: Optional[float] = None,
               classifier: Union[None, str, Path, LoadedRun] = None, classifier_scale: Optional[float] = None,
               prompts=None, negative_prompt: Optional[str] = None,
               class_weights: Optional[Sequence[int]] = None) -> tuple[object, Optional[torch.Tensor]]:
    """(denoiser, labels) for drawing ``num`` samples of ``run``.

    Class-conditional runs: classifier-free guidance at ``guidance`` (default: the run's
    ``sample.guidance``) towards ``cls`` (default: every class in turn, or in the proportions of
    ``class_weights``, see :func:`class_labels`). Any VP run with a
    ``classifier`` run: classifier guidance at ``classifier_scale`` (default: the classifier's
    ``sample.guidance``). Unconditional runs without a classifier take no class and no scale.
    Text runs: ``prompts`` (see :func:`text_condition`); without prompts, their null condition.
    """
    if is_text(run):
        return text_guided(run, num, prompts, negative_prompt, guidance,
                           asked_class=cls is not None or classifier is not None or classifier_scale is not None)
    k = num_classes(run)
    if prompts is not None or negative_prompt is not None:
        if k:
            raise DenoiselabError(
                f"{run.run_dir} is class-conditional, not text-conditional: use --class K instead of --prompt"
            )
        raise DenoiselabError(
            f"{run.run_dir} is an unconditional model: drop --prompt (a text model is trained with --preset mnist-text)"
        )
    if classifier is None:
        return class_guided(run, num, k, cls, guidance, classifier_scale, class_weights)
    return classifier_guided(run, num, k, cls, guidance, classifier, classifier_scale, class_weights)


def text_guided(
    run: LoadedRun, num: int, prompts, negative_prompt: Optional[str], guidance: Optional[float], asked_class: bool
) -> tuple[object, Optional[torch.Tensor]]:
    """guided_run for a text-conditional run: prompts, or its null condition without them."""
    if asked_class:
        raise DenoiselabError(f'{run.run_dir} is a text-conditional model: ask with --prompt "a red seven" '
                              "instead of --class or --classifier")
    if prompts is None:
        if guidance is not None or negative_prompt is not None:
            raise DenoiselabError('--guidance and --negative-prompt steer a prompt: add --prompt "..."')
        return run.denoiser, None
    return text_condition(run, num, prompts, negative_prompt, guidance)


def class_guided(
    run: LoadedRun, num: int, k: int, cls: Optional[int], guidance: Optional[float], classifier_scale: Optional[float],
    class_weights: Optional[Sequence[int]] = None,
) -> tuple[object, Optional[torch.Tensor]]:
    """guided_run without a classifier: classifier-free guidance of a class-conditional run, or an
    unconditional run as it is."""
    if classifier_scale is not None:
        raise DenoiselabError(
            "--classifier-scale needs --classifier CLF_RUN (a run of the mnist-classifier preset or alike)"
        )
    if not k:
        if cls is not None:
            raise DenoiselabError(f"{run.run_dir} is an unconditional model: drop --class, train a conditional "
                                  "preset (mnist-class, ...), or guide it with --classifier CLF_RUN")
        if guidance is not None:
            raise DenoiselabError(f"{run.run_dir} is an unconditional model: --guidance needs a class-conditional "
                                  "run (for classifier guidance use --classifier CLF_RUN --classifier-scale S)")
        return run.denoiser, None
    labels = class_labels(num, k, cls, f"{run.run_dir}", class_weights)
    scale = run.config.sample.guidance if guidance is None else guidance
    return guided(run.denoiser, scale=scale), labels


def classifier_guided(run: LoadedRun, num: int, k: int, cls: Optional[int], guidance: Optional[float],
                      classifier: Union[str, Path, LoadedRun],
                      classifier_scale: Optional[float],
                      class_weights: Optional[Sequence[int]] = None) -> tuple[object, Optional[torch.Tensor]]:
    """guided_run with a classifier run: classifier guidance (and CFG too on a class-conditional run)."""
    clf = (
        classifier if isinstance(classifier, LoadedRun) else load_classifier(classifier, device=module_device(run.net))
    )
    check_classifier(run, clf)
    kc = num_classes(clf)
    if k and k != kc:
        raise DenoiselabError(f"the classifier knows {kc} classes, the run {k}: use a classifier of the run's data")
    if guidance is not None and not k:
        raise DenoiselabError(f"{run.run_dir} is an unconditional model: --guidance needs a class-conditional run; "
                              "the classifier's strength is --classifier-scale")
    labels = class_labels(num, kc, cls, f"classifier {clf.run_dir}", class_weights)
    scale = (run.config.sample.guidance if guidance is None else guidance) if k else 1.0
    cscale = clf.config.sample.guidance if classifier_scale is None else classifier_scale
    return guided(run.denoiser, scale=scale, classifier=clf.net, classifier_scale=cscale), labels


@torch.no_grad()
def classifier_accuracy_by_t(
    clf: LoadedRun, x0: torch.Tensor, y: torch.Tensor, ts=(0, 100, 250, 500, 750, 999), seed: int = 0
) -> dict:
    """Accuracy of p(y | x_t, t) on images noised to each t (fixed noise): how far into the noise it sees."""
    from ..process import q_sample
    from .build import build_schedule

    schedule = build_schedule(clf.config.diffusion)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for t in ts:
        t = min(int(t), schedule.T - 1)
        tt = torch.full((len(x0),), t)
        xt = q_sample(schedule, x0, tt, eps)
        pred = torch.cat([clf.net(xt[i : i + 500], tt[i : i + 500].float()).argmax(1) for i in range(0, len(xt), 500)])
        out[str(t)] = float((pred == y).double().mean())
    return out
