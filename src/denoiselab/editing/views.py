"""Views of an image for visual anagrams (Geng et al. 2024, "Visual Anagrams: Generating
Multi-View Optical Illusions with Diffusion Models").

A view V is an orthogonal linear map of the image (a pixel permutation, or negation): then V
maps N(0, I) noise to N(0, I) noise, so the denoiser's estimate for the viewed image can be
mapped back by V^-1 and averaged with the others (ibid., sec. 3.1 and 3.2, "which views work").
Each view here is a permutation (flip, rotations, jigsaw) or an involution (negation, flip,
rot180), and ``inverse(apply(x)) == x`` exactly.

| name     | what it does                                                                |
| -------- | --------------------------------------------------------------------------- |
| identity | nothing                                                                     |
| flip     | upside down (rows reversed)                                                 |
| rot90    | a quarter turn counter-clockwise (square images)                            |
| rot180   | a half turn                                                                 |
| negate   | x -> -x: dark and light swapped (for images in [-1, 1])                     |
| jigsaw   | a fixed permutation of square tiles (ibid., sec. 3.3 uses puzzle pieces)    |
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import DenoiselabError


class View:
    """A named orthogonal map of (N, C, H, W) tensors and its inverse."""

    def __init__(self, name: str, apply: Callable, inverse: Callable, permutation: bool):
        self.name = name
        self._apply = apply
        self._inverse = inverse
        self.permutation = permutation  # True: moves pixels only; False (negate): changes values

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self._inverse(x)

    def __repr__(self) -> str:
        return f"View({self.name!r})"


def jigsaw_permutation(h: int, w: int) -> tuple[int, torch.Tensor]:
    """(tile side, permutation of the tiles): 4 x 4 tiles where the sides allow, else 2 x 2.

    The permutation is a fixed derangement (every tile moves): tile k goes to (5 k + 3) mod 16
    for 16 tiles, a cyclic shift of the quadrants for 4. Fixed, not drawn, so an anagram made
    today reads the same tomorrow.
    """
    for n in (4, 2):
        if h % n == 0 and w % n == 0 and h == w:
            k = n * n
            perm = torch.tensor([(5 * i + 3) % k for i in range(k)]) if n == 4 else torch.tensor([1, 3, 0, 2])
            return h // n, perm
    raise DenoiselabError(f"view jigsaw needs square images with a side divisible by 2, got {h}x{w}")


def _tiles(x: torch.Tensor, side: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // side, side, w // side, side).permute(0, 1, 2, 4, 3, 5).reshape(n, c, -1, side, side)


def _untiles(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n, c, k, side, _ = t.shape
    return t.reshape(n, c, h // side, w // side, side, side).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def _jigsaw(inverse: bool) -> Callable:
    def f(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        side, perm = jigsaw_permutation(h, w)
        tiles = _tiles(x, side)
        out = torch.empty_like(tiles)
        if inverse:
            out = tiles[:, :, perm]           # tile at place perm[k] comes back to k
        else:
            out[:, :, perm] = tiles           # tile k moves to place perm[k]
        return _untiles(out, h, w)

    return f


def _square(f: Callable) -> Callable:
    def g(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise DenoiselabError(f"view rot90 needs square images, got {x.shape[-2]}x{x.shape[-1]}")
        return f(x)

    return g


VIEWS: dict[str, View] = {
    "identity": View("identity", lambda x: x, lambda x: x, True),
    "flip": View("flip", lambda x: x.flip(-2), lambda x: x.flip(-2), True),
    "rot90": View("rot90", _square(lambda x: x.rot90(1, (-2, -1))), _square(lambda x: x.rot90(-1, (-2, -1))), True),
    "rot180": View("rot180", lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1), True),
    "negate": View("negate", lambda x: -x, lambda x: -x, False),
    "jigsaw": View("jigsaw", _jigsaw(False), _jigsaw(True), True),
}
USER_VIEWS = ("flip", "rot90", "rot180", "negate", "jigsaw")


def get_view(name: str) -> View:
    if name not in VIEWS:
        raise DenoiselabError(f"unknown view {name!r}: choose one of {', '.join(USER_VIEWS)}")
    return VIEWS[name]
