"""The shift-tolerant LPIPS distance (Ghildyal & Liu 2022, "Shift-tolerant Perceptual Similarity
Metric", sec. 4) on its AlexNet backbone, with the weights the ``stlpips-pytorch`` wheel ships
(BSD-2; ``weights/vST0.0/alex_shift_tolerant.pth``), read from the installed package: nothing is
downloaded. The wheel's own module imports torchvision, so the small network is written out here.

LPIPS (Zhang et al. 2018, eq. 1): d(x, x') = sum_l mean_hw || w_l * (phi_l(x) / |phi_l(x)| -
phi_l(x') / |phi_l(x')|) ||^2, phi_l the l-th ReLU output of the backbone, unit-normalised over
channels, w_l a learned 1x1 weighting. The shift-tolerant AlexNet takes the first convolution at
stride 1 and does every downsampling by a 3x3 binomial blur with stride 2 after reflection
padding (blur pooling, Zhang 2019), so a shift of a pixel or two barely changes the distance.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DenoiselabError

MISSING = ("the perceptual loss needs the stlpips-pytorch package's weights: pip install 'denoiselab[perceptual]' "
           "(or --set diffusion.perceptual_weight=0)")
WEIGHTS = ("weights", "vST0.0", "alex_shift_tolerant.pth")
CHANNELS = (64, 192, 384, 256, 256)


def weights_path() -> Path:
    """The AlexNet ST-LPIPS weights inside the installed ``stlpips_pytorch`` package (located
    without importing it: its module needs torchvision)."""
    spec = find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise DenoiselabError(MISSING)
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*WEIGHTS)
    if not path.is_file():
        raise DenoiselabError(f"{path} is missing from the stlpips-pytorch install: reinstall it "
                              "(pip install --force-reinstall stlpips-pytorch)")
    return path


class BlurDownsample(nn.Module):
    """Reflection-pad 2 on each side, then a 3x3 binomial [1, 2, 1]^T [1, 2, 1] / 16 blur at stride 2
    (the package's ``Downsample(filt_size=3, pad_more=True)``); the filter is a buffer, as there."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class ShiftTolerantAlexNet(nn.Module):
    """The backbone, cut into the five slices whose outputs LPIPS compares. Module indices follow
    the package's ``features`` list so its state dict loads as it is."""

    def __init__(self):
        super().__init__()
        relu, pool = nn.ReLU(), lambda: nn.MaxPool2d(3, stride=1)
        self.slice1 = nn.Sequential()
        self.slice1.add_module("0", nn.Conv2d(3, 64, 11, stride=1, padding=2))
        self.slice1.add_module("1", BlurDownsample(64))
        self.slice1.add_module("2", relu)
        self.slice2 = nn.Sequential()
        for i, m in zip(range(3, 7), (pool(), BlurDownsample(64), nn.Conv2d(64, 192, 5, padding=2), relu)):
            self.slice2.add_module(str(i), m)
        self.slice3 = nn.Sequential()
        for i, m in zip(range(7, 11), (pool(), BlurDownsample(192), nn.Conv2d(192, 384, 3, padding=1), relu)):
            self.slice3.add_module(str(i), m)
        self.slice4 = nn.Sequential()
        self.slice4.add_module("11", nn.Conv2d(384, 256, 3, padding=1))
        self.slice4.add_module("12", relu)
        self.slice5 = nn.Sequential()
        self.slice5.add_module("13", nn.Conv2d(256, 256, 3, padding=1))
        self.slice5.add_module("14", relu)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for s in (self.slice1, self.slice2, self.slice3, self.slice4, self.slice5):
            x = s(x)
            feats.append(x)
        return feats


class LinearHead(nn.Module):
    """w_l: a 1x1 convolution to one channel without bias (named as the package's ``NetLinLayer``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class STLPIPS(nn.Module):
    """``net(x, y) -> (N,)`` distances between image batches in [-1, 1]; frozen, in eval mode."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        # LPIPS v0.1's input scaling: (x - shift) / scale maps [-1, 1] images to ImageNet's statistics.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = ShiftTolerantAlexNet()
        for i, c in enumerate(CHANNELS):
            self.add_module(f"lin{i}", LinearHead(c))
        if pretrained:
            self.load_package_weights()
        self.requires_grad_(False).eval()

    def load_package_weights(self) -> None:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        state = {k.replace("scaling_layer.", ""): v for k, v in state.items()}
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise DenoiselabError(f"the stlpips-pytorch weights do not fit the ST-LPIPS AlexNet: "
                                  f"{str(e).splitlines()[0]}") from None

    def train(self, mode: bool = True) -> "STLPIPS":
        return super().train(False)  # a fixed metric: its heads' dropout never runs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3:
            raise DenoiselabError(f"LPIPS compares RGB images, got {x.shape[1]} channels: "
                                  "--set diffusion.perceptual_weight=0 for grey images")
        fx, fy = self.net((x - self.shift) / self.scale), self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for i, (a, b) in enumerate(zip(fx, fy)):
            # Unit-normalise over channels (eps as the package's), squared difference, w_l, spatial mean.
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{i}")((a - b).pow(2)).mean((1, 2, 3))
        return total


__all__ = ["CHANNELS", "MISSING", "STLPIPS", "BlurDownsample", "LinearHead", "ShiftTolerantAlexNet", "weights_path"]
