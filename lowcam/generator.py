"""ORNet's low-level activation map generator: a small U-Net over a backbone's stem features."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lowcam._checks import check_int, check_shape, check_tensor

__all__ = ["GeneratorOutput", "LowLevelActivationGenerator"]


class GeneratorOutput(NamedTuple):
    """What :class:`LowLevelActivationGenerator` returns.

    Attributes:
        activation: the activation map ``p = sigmoid(BN(conv3x3(f)))``, ``(B, 1, h, w)``, in ``(0, 1)``
            (in float32 the sigmoid rounds to exactly 0 or 1 only beyond about ±17 before it).
        class_maps: the class maps ``f``, ``(B, C, h, w)``.
        logits: the generator's own class scores, ``GAP(conv1x1(f))``, ``(B, C)``.
    """

    activation: torch.Tensor
    class_maps: torch.Tensor
    logits: torch.Tensor


_Padding = Literal["zeros", "replicate"]


class _ConvBlock(nn.Sequential):
    """``[conv3x3 (no bias) -> BN(momentum 0.01) -> LeakyReLU(0.01)] x 2``."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: _Padding = "zeros") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False, padding_mode=padding_mode),
            nn.BatchNorm2d(out_channels, momentum=0.01),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, padding_mode=padding_mode),
            nn.BatchNorm2d(out_channels, momentum=0.01),
            nn.LeakyReLU(0.01, inplace=True),
        )


class _UpBlock(nn.Module):
    """Upsample to the skip's size (bilinear, ``align_corners=False``), concat ``[skip, up]``, conv block."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: _Padding = "zeros") -> None:
        super().__init__()
        self.block = _ConvBlock(in_channels, out_channels, padding_mode)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out: torch.Tensor = self.block(torch.cat((skip, up), dim=1))
        return out


class LowLevelActivationGenerator(nn.Module):
    r"""The activation map generator of ORNet: a U-Net over low-level (stem) features.

    With base width :math:`b` and input channels :math:`c` (64 for a ResNet stem):

    - ``down1`` = maxpool2 → block(c → 2b), ``down2`` = maxpool2 → block(2b → 4b),
      ``down3`` = maxpool2 → block(4b → 8b);
    - ``up1``: upsample ``down3`` to ``down2``'s size, concat (12b) → block → 4b; ``up2``: to ``down1``'s
      size, concat (6b) → block → 3b; ``up3``: to the input's size, concat (3b + c) → block → C,
      the class maps :math:`f`;
    - map head: :math:`p = \sigma(\mathrm{BN}(\mathrm{conv}_{3\times3}(f)))`;
    - class head: :math:`\mathrm{GAP}(\mathrm{conv}_{1\times1}(f))`.

    A block is ``[conv3x3 (no bias) → BN(momentum 0.01) → LeakyReLU(0.01)] × 2``. Convolutions use
    Kaiming-normal initialisation (fan-out, ReLU); BN weights are 1 and biases 0.

    Deviation from the reference code: the reference upsamples by exactly ×2 and hard-codes a 56×56
    pooling window, so it only works when H and W are multiples of 8 (and 56×56 maps). lowcam upsamples
    to each skip connection's size and pools globally, so any H×W works; for multiples of 8 the two
    agree. Specification: ``docs/method.md`` (section "Generator").

    Dtypes: the network runs in the dtype of its parameters (float32 unless converted with ``.half()``,
    ``.bfloat16()`` or ``.double()``); features of another floating dtype are cast to it, and the three
    outputs come back in the *features'* dtype, like every lowcam component. So float16 features through a
    float32 generator are computed in float32 and returned in float16; to compute in float64, convert the
    module (``generator.double()``). Under :func:`torch.autocast` the autocast rules choose the compute
    dtype of the convolutions as usual.

    Args:
        in_channels: channels of the low-level feature (64 for ResNet).
        num_classes: number of classes C (one class map each).
        base_width: base width b of the U-Net (reference 64).
        padding_mode: how every 3×3 convolution pads its input: ``"zeros"`` (the reference) or
            ``"replicate"`` (the edge pixels repeated: no frame of artificial values along the map's
            border, which a long-trained stage-1 map can latch onto; a documented deviation).

    Shape:
        - Input: ``(B, in_channels, h, w)``, any ``h, w >= 1``.
        - Output: :class:`GeneratorOutput` with ``(B, 1, h, w)``, ``(B, C, h, w)`` and ``(B, C)``, in the
          input's dtype.

    Example:
        >>> gen = LowLevelActivationGenerator(in_channels=8, num_classes=5, base_width=4)
        >>> out = gen(torch.randn(2, 8, 13, 11))
        >>> tuple(out.activation.shape), tuple(out.class_maps.shape), tuple(out.logits.shape)
        ((2, 1, 13, 11), (2, 5, 13, 11), (2, 5))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_width: int = 64,
        *,
        padding_mode: _Padding = "zeros",
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("num_classes", num_classes, minimum=1)
        check_int("base_width", base_width, minimum=1)
        if padding_mode not in ("zeros", "replicate"):
            raise ValueError(f"padding_mode must be 'zeros' or 'replicate', got {padding_mode!r}")
        b, pad = base_width, padding_mode
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_width = base_width
        self.padding_mode = padding_mode
        self.down1 = _ConvBlock(in_channels, 2 * b, pad)
        self.down2 = _ConvBlock(2 * b, 4 * b, pad)
        self.down3 = _ConvBlock(4 * b, 8 * b, pad)
        self.up1 = _UpBlock(12 * b, 4 * b, pad)
        self.up2 = _UpBlock(6 * b, 3 * b, pad)
        self.up3 = _UpBlock(3 * b + in_channels, num_classes, pad)
        self.map_head = nn.Sequential(
            nn.Conv2d(num_classes, 1, 3, padding=1, bias=False, padding_mode=pad), nn.BatchNorm2d(1)
        )
        self.class_head = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-out, ReLU) convolutions; BatchNorm weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        # ceil_mode keeps at least one pixel for odd or tiny inputs.
        return F.max_pool2d(x, 2, ceil_mode=True)

    def forward(self, features: torch.Tensor) -> GeneratorOutput:
        check_tensor("features", features)
        check_shape("features", features, "(B, in_channels, h, w)", 4)
        if features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must have {self.in_channels} channels (B, {self.in_channels}, h, w), "
                f"got shape {tuple(features.shape)}"
            )
        # Compute in the parameters' dtype (float16/bfloat16/float64 features with float32 weights would
        # not convolve); return in the features' dtype.
        param_dtype = self.class_head.weight.dtype
        x = features.to(param_dtype)
        d1 = self.down1(self._pool(x))
        d2 = self.down2(self._pool(d1))
        d3 = self.down3(self._pool(d2))
        u1 = self.up1(d3, d2)
        u2 = self.up2(u1, d1)
        class_maps = self.up3(u2, x)
        activation = torch.sigmoid(self.map_head(class_maps))
        logits = self.class_head(class_maps).mean(dim=(2, 3))
        out_dtype = features.dtype
        return GeneratorOutput(activation.to(out_dtype), class_maps.to(out_dtype), logits.to(out_dtype))
