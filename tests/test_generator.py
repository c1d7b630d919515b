"""LowLevelActivationGenerator: architecture as specified, any H×W, init, compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowcam


def small(in_channels: int = 6, classes: int = 5, width: int = 4) -> lowcam.LowLevelActivationGenerator:
    torch.manual_seed(0)
    return lowcam.LowLevelActivationGenerator(in_channels, classes, base_width=width)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (7, 9), (13, 11), (56, 56), (17, 40)])
def test_shapes_follow_the_input(height: int, width: int) -> None:
    gen = small()
    out = gen(torch.randn(2, 6, height, width))
    assert isinstance(out, lowcam.GeneratorOutput)
    assert out.activation.shape == (2, 1, height, width)
    assert out.class_maps.shape == (2, 5, height, width)
    assert out.logits.shape == (2, 5)
    assert ((out.activation > 0) & (out.activation < 1)).all()


def test_channel_widths_match_the_spec() -> None:
    b, c_in, classes = 64, 64, 200
    gen = lowcam.LowLevelActivationGenerator(c_in, classes, base_width=b)

    def convs(module: nn.Module) -> list[tuple[int, int]]:
        return [(m.in_channels, m.out_channels) for m in module.modules() if isinstance(m, nn.Conv2d)]

    assert convs(gen.down1) == [(c_in, 2 * b), (2 * b, 2 * b)]
    assert convs(gen.down2) == [(2 * b, 4 * b), (4 * b, 4 * b)]
    assert convs(gen.down3) == [(4 * b, 8 * b), (8 * b, 8 * b)]
    assert convs(gen.up1) == [(12 * b, 4 * b), (4 * b, 4 * b)]
    assert convs(gen.up2) == [(6 * b, 3 * b), (3 * b, 3 * b)]
    assert convs(gen.up3) == [(3 * b + c_in, classes), (classes, classes)]
    assert convs(gen.map_head) == [(classes, 1)]
    assert convs(gen.class_head) == [(classes, classes)]
    for m in gen.modules():
        if isinstance(m, nn.Conv2d):
            assert m.bias is None
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(
                m.bias, torch.zeros_like(m.bias)
            )
        if isinstance(m, nn.BatchNorm2d) and m is not gen.map_head[1]:
            assert m.momentum == 0.01
        if isinstance(m, nn.LeakyReLU):
            assert m.negative_slope == 0.01


def test_kaiming_fan_out_init() -> None:
    gen = lowcam.LowLevelActivationGenerator(64, 200, base_width=64)
    weight = gen.down3[3].weight  # 512 → 512, 3×3: fan_out = 512 · 9
    expected_std = (2.0 / (512 * 9)) ** 0.5
    assert abs(float(weight.detach().std()) / expected_std - 1) < 0.02


def test_heads_compute_what_the_docstring_says() -> None:
    gen = small().eval()
    x = torch.randn(3, 6, 16, 16)
    out = gen(x)
    torch.testing.assert_close(out.activation, torch.sigmoid(gen.map_head(out.class_maps)))
    torch.testing.assert_close(out.logits, gen.class_head(out.class_maps).mean(dim=(2, 3)))


def test_multiple_of_eight_uses_exact_doubling() -> None:
    # For H, W multiples of 8 upsampling to the skip size equals the reference's ×2 upsampling.
    gen = small().eval()
    x = torch.randn(1, 6, 24, 16)
    d1 = gen.down1(nn.functional.max_pool2d(x, 2))
    d2 = gen.down2(nn.functional.max_pool2d(d1, 2))
    d3 = gen.down3(nn.functional.max_pool2d(d2, 2))
    up = nn.functional.interpolate(d3, scale_factor=2, mode="bilinear", align_corners=False)
    u1 = gen.up1.block(torch.cat((d2, up), 1))
    torch.testing.assert_close(gen.up1(d3, d2), u1)


def test_gradients_reach_every_parameter() -> None:
    gen = small()
    out = gen(torch.randn(2, 6, 9, 7))
    (out.activation.sum() + out.logits.sum()).backward()
    for name, param in gen.named_parameters():
        assert param.grad is not None, name


def test_compiled_equals_eager() -> None:
    torch._dynamo.reset()
    gen = small().eval()
    x = torch.randn(2, 6, 13, 11)
    compiled = torch.compile(gen, fullgraph=True)
    for got, want in zip(compiled(x), gen(x)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_dtype_and_channels_last() -> None:
    gen = small().eval()
    x = torch.randn(2, 6, 12, 12)
    ref = gen(x)
    out = gen.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out.activation, ref.activation, rtol=1e-4, atol=1e-5)
    gen64 = small().double().eval()
    assert gen64(x.double()).activation.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_other_input_dtypes_run_in_the_parameters_dtype_and_come_back_in_theirs(dtype: torch.dtype) -> None:
    gen = small().eval()
    x = torch.randn(2, 6, 12, 10)
    ref = gen(x.to(dtype).float())  # what the float32 network computes from the rounded input
    out = gen(x.to(dtype))
    for got, want in zip(out, ref):
        assert got.dtype == dtype
        torch.testing.assert_close(got, want.to(dtype))
    with torch.no_grad():
        low = small().to(dtype).eval()(x.to(dtype))  # a converted module computes in that dtype
    assert all(t.dtype == dtype for t in low)


def test_bad_input() -> None:
    gen = small()
    with pytest.raises(
        ValueError, match=r"features must have 6 channels \(B, 6, h, w\), got shape \(2, 5, 8, 8\)"
    ):
        gen(torch.randn(2, 5, 8, 8))
    with pytest.raises(
        ValueError, match=r"features must have shape \(B, in_channels, h, w\), got shape \(6, 8, 8\)"
    ):
        gen(torch.randn(6, 8, 8))
    with pytest.raises(TypeError, match="features must have a floating dtype"):
        gen(torch.zeros(2, 6, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        lowcam.LowLevelActivationGenerator(64, 0)
    with pytest.raises(TypeError, match="in_channels must be an int, got float"):
        lowcam.LowLevelActivationGenerator(64.0, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(("height", "width"), [(9, 12), (1, 1), (5, 3)])
def test_replicate_padding_leaves_no_frame_on_a_constant_input(height: int, width: int) -> None:
    """A constant feature gives a constant map with ``padding_mode="replicate"``; with the reference's
    zero padding the border differs from the inside (the frame a trained map can latch onto). Both keep
    the parameters' names and shapes, so a checkpoint of one loads into the other."""
    torch.manual_seed(0)
    zeros = lowcam.LowLevelActivationGenerator(4, 3, base_width=2).eval()
    replicate = lowcam.LowLevelActivationGenerator(4, 3, base_width=2, padding_mode="replicate").eval()
    replicate.load_state_dict(zeros.state_dict())
    features = torch.full((2, 4, height, width), 0.7)
    with torch.no_grad():
        flat = replicate(features).class_maps
        framed = zeros(features).class_maps
    assert torch.allclose(flat, flat[..., :1, :1].expand_as(flat), atol=1e-5)
    if height >= 3 and width >= 3:
        assert not torch.allclose(framed, framed[..., 1:2, 1:2].expand_as(framed), atol=1e-3)
    assert all(
        m.padding_mode == "replicate"
        for m in replicate.modules()
        if isinstance(m, nn.Conv2d) and m.padding != (0, 0)
    )
    with pytest.raises(ValueError, match="padding_mode must be 'zeros' or 'replicate', got 'reflect'"):
        lowcam.LowLevelActivationGenerator(4, 3, padding_mode="reflect")  # type: ignore[arg-type]
