"""Plain torch modules with signature ``net(x, t, cond=None)``; nothing here knows a schedule."""

from __future__ import annotations

from torch import nn

from ..errors import DenoiselabError
from .mlp import ResidualMLP, TimeLinearNet

MODELS: dict[str, type[nn.Module]] = {
    "timelinear": TimeLinearNet,
    "mlp": ResidualMLP,
}


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise DenoiselabError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:
        raise DenoiselabError(f"bad options for model {name!r}: {e}") from None


__all__ = ["MODELS", "ResidualMLP", "TimeLinearNet", "build_model"]
