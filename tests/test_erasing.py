"""attentive_erasing / AttentiveErasing (torch backend): reference, statistics, gradients, errors."""

from __future__ import annotations

import pytest
import reference
import torch

import lowcam
from lowcam.erasing import ErasingParams
from lowcam.ops.erasing_torch import _draw_randoms


def blobs(
    batch: int, height: int, width: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Smooth maps in [0, 1] with one or two Gaussian blobs each, like real activation maps."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(height, dtype=torch.float64).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, 1, width)
    maps = torch.zeros(batch, height, width, dtype=torch.float64)
    for _ in range(2):
        cy = torch.rand(batch, 1, 1, generator=g, dtype=torch.float64) * height
        cx = torch.rand(batch, 1, 1, generator=g, dtype=torch.float64) * width
        sy = 1.0 + torch.rand(batch, 1, 1, generator=g, dtype=torch.float64) * height / 2
        sx = 1.0 + torch.rand(batch, 1, 1, generator=g, dtype=torch.float64) * width / 2
        maps = torch.maximum(maps, torch.exp(-((ys - cy) ** 2) / (2 * sy**2) - (xs - cx) ** 2 / (2 * sx**2)))
    return maps.unsqueeze(1).to(dtype)


def run(a: torch.Tensor, seed: int, **kwargs: object) -> lowcam.ErasingOutput:
    g = torch.Generator(device=a.device).manual_seed(seed)
    return lowcam.attentive_erasing(a, generator=g, backend="torch", **kwargs)  # type: ignore[arg-type]


def reference_output(a: torch.Tensor, seed: int, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    args = ErasingParams(**kwargs)._resolve(a.shape[2], a.shape[3])  # type: ignore[arg-type]
    g = torch.Generator(device=a.device).manual_seed(seed)
    draws = _draw_randoms(a, args, g)
    region = reference.erasing_region(
        a.cpu(),
        draws.factor.cpu(),
        draws.chosen.cpu(),
        draws.half_size.cpu(),
        (args.min_size_y, args.min_size_x),
    )
    out = reference.erase(a.cpu(), region, draws.keep.cpu(), args.scale, args.shift)
    return out, region


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 24, 24), (6, 7, 9), (8, 31, 17), (4, 56, 56)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"erase_prob": 1.0, "min_size": 0},
        {"erase_prob": 0.8, "min_size": 1, "per_sample_factor": True},
        {"erase_prob": 1.0, "min_factor": 0.2, "max_factor": 0.9, "scale": 0.5, "shift": 0.1},
    ],
)
def test_matches_reference_given_the_same_draws(
    device: str, batch: int, height: int, width: int, kwargs: dict[str, object]
) -> None:
    a = blobs(batch, height, width, seed=batch * height).to(device)
    for seed in range(3):
        out, region = run(a, seed, **kwargs)
        ref_out, ref_region = reference_output(a, seed, **kwargs)
        assert torch.equal(region.cpu(), ref_region)
        torch.testing.assert_close(out.cpu(), ref_out, rtol=1e-12, atol=1e-12)


def test_reference_check_is_not_vacuous() -> None:
    a = blobs(16, 32, 32, seed=3)
    sizes = [int(run(a, seed, erase_prob=1.0, min_size=1).region.sum()) for seed in range(4)]
    assert min(sizes) > 0
    assert len(set(sizes)) > 1


def test_ties_pick_the_first_maximum() -> None:
    a = torch.zeros(1, 1, 20, 20, dtype=torch.float64)
    a[..., 2:18, 2:18] = 1.0  # a plateau: every pixel of it ties for the maximum
    region = run(a, 0, erase_prob=1.0, min_size=2, min_factor=0.5, max_factor=0.5).region
    _, ref_region = reference_output(a, 0, erase_prob=1.0, min_size=2, min_factor=0.5, max_factor=0.5)
    assert torch.equal(region, ref_region)
    ys, xs = region[0, 0].nonzero().unbind(1)
    assert int(ys.min()) == 2 and int(xs.min()) == 2  # the box is centred on the first (top-left) maximum


def test_row_and_column_zero_can_be_erased() -> None:
    # The reference code never erases row 0 / column 0 (a bug lowcam does not copy).
    a = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    a[..., :12, :12] = 1.0
    region = run(a, 0, erase_prob=1.0, min_size=0).region
    assert bool(region[0, 0, 0, 0])


def test_empty_range_is_not_erased() -> None:
    a = torch.zeros(2, 1, 16, 16)
    a[:, :, 6:10, 6:10] = 1.0  # extent 3 → 3 // 2 = 1 ≤ min_size=4: nothing erased
    out, region = run(a, 0, erase_prob=1.0)
    assert not region.any()
    torch.testing.assert_close(out, 0.6 * a + 0.2)


def test_constant_map_is_not_erased() -> None:
    a = torch.full((3, 1, 16, 16), 0.7)
    out, region = run(a, 0, erase_prob=1.0, min_size=0)
    assert not region.any()
    torch.testing.assert_close(out, torch.full_like(a, 0.6 * 0.7 + 0.2))


def test_eval_mode_is_identity() -> None:
    a = blobs(3, 9, 9, dtype=torch.float32)
    out, region = lowcam.attentive_erasing(a, training=False)
    assert out is a
    assert region.dtype == torch.bool and region.shape == a.shape and not region.any()
    module = lowcam.AttentiveErasing(erase_prob=1.0).eval()
    assert module(a).erased is a


def test_share_of_erased_samples_is_erase_prob() -> None:
    batch = 4000
    a = torch.zeros(batch, 1, 16, 16)
    a[:, :, 2:14, 2:14] = 1.0  # every chosen sample has a valid, non-empty region
    for p in (0.3, 0.5):
        region = run(a, 7, erase_prob=p).region
        share = region.flatten(1).any(1).float().mean()
        sd = (p * (1 - p) / batch) ** 0.5
        assert abs(float(share) - p) < 5 * sd, (share, p)


def test_drop_rate_inside_the_region_is_the_squashed_value() -> None:
    g = torch.Generator().manual_seed(0)
    batch = 600
    a = torch.zeros(batch, 1, 24, 24)
    a[:, :, 2:22, 2:22] = 0.02 + 0.98 * torch.rand(batch, 1, 20, 20, generator=g)
    out, region = run(a, 1, erase_prob=1.0, min_factor=1.0, max_factor=1.0, min_size=0)
    dropped = out == 0
    assert not (dropped & ~region).any()
    values = a[region]
    for low, high in ((0.0, 0.35), (0.35, 0.7), (0.7, 1.0)):
        in_bin = (values >= low) & (values < high)
        rate = dropped[region][in_bin].float().mean()
        expected = (0.6 * values[in_bin] + 0.2).mean()
        n = int(in_bin.sum())
        assert n > 2000
        assert abs(float(rate - expected)) < 5 * (0.25 / n) ** 0.5, (low, high, rate, expected)


def test_same_seed_same_output_different_seed_different() -> None:
    a = blobs(8, 28, 28, dtype=torch.float32)
    first, second, other = (
        run(a, 5, erase_prob=1.0, min_size=1),
        run(a, 5, erase_prob=1.0, min_size=1),
        run(a, 6, erase_prob=1.0, min_size=1),
    )
    assert torch.equal(first.erased, second.erased) and torch.equal(first.region, second.region)
    assert not torch.equal(first.erased, other.erased)


def test_gradient_is_scale_times_keep() -> None:
    a = blobs(4, 20, 20).requires_grad_()
    out, region = run(a, 2, erase_prob=1.0, min_size=1)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    dropped = region & (out.detach() == 0)
    assert dropped.any()
    expected = torch.where(dropped, 0.0, 0.6 * grad_out)
    torch.testing.assert_close(a.grad, expected)


def test_gradcheck() -> None:
    a = blobs(2, 12, 12).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: run(x, 3, erase_prob=1.0, min_size=1).erased, (a,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dtypes_follow_the_input(device: str, dtype: torch.dtype) -> None:
    a = blobs(4, 15, 13, dtype=dtype).to(device).requires_grad_()
    out, region = run(a, 0, erase_prob=1.0, min_size=1)
    assert out.dtype == dtype and out.device == a.device and region.dtype == torch.bool
    outside = ~region
    torch.testing.assert_close(
        out[outside].float(), (0.6 * a.detach().float() + 0.2)[outside].to(dtype).float()
    )
    out.sum().backward()
    assert a.grad is not None and a.grad.dtype == dtype


def test_non_contiguous_and_channels_last() -> None:
    a = blobs(4, 17, 23, dtype=torch.float32)
    expected = run(a, 4, erase_prob=1.0, min_size=1)
    for view in (a.transpose(2, 3).contiguous().transpose(2, 3), a.to(memory_format=torch.channels_last)):
        got = run(view, 4, erase_prob=1.0, min_size=1)
        assert torch.equal(got.region, expected.region)
        torch.testing.assert_close(got.erased, expected.erased)


def test_module_equals_function() -> None:
    a = blobs(4, 16, 16, dtype=torch.float32)
    module = lowcam.AttentiveErasing(
        erase_prob=0.7,
        min_factor=0.1,
        max_factor=0.6,
        min_size=2,
        scale=0.5,
        shift=0.3,
        per_sample_factor=True,
        backend="torch",
    )
    got = module(a, generator=torch.Generator().manual_seed(9))
    want = run(
        a,
        9,
        erase_prob=0.7,
        min_factor=0.1,
        max_factor=0.6,
        min_size=2,
        scale=0.5,
        shift=0.3,
        per_sample_factor=True,
    )
    assert torch.equal(got.erased, want.erased) and torch.equal(got.region, want.region)
    assert "per_sample_factor=True" in repr(module)


def test_compiled_equals_eager() -> None:
    # torch.compile cannot take a torch.Generator argument (dynamo does not trace it); the compiled path
    # draws from the default generator. On CPU it runs the eager backend as one opaque op, so the same
    # seed gives the same numbers as eager without inductor's fallback_random.
    torch._dynamo.reset()
    a = blobs(6, 20, 20, dtype=torch.float32).requires_grad_()
    module = lowcam.AttentiveErasing(erase_prob=1.0, min_size=1, backend="torch")
    compiled = torch.compile(module, fullgraph=True)
    grad_out = torch.rand(a.shape, generator=torch.Generator().manual_seed(3)) + 0.5
    torch.manual_seed(11)
    got = compiled(a)
    (got_grad,) = torch.autograd.grad(got.erased, a, grad_out)
    torch.manual_seed(11)
    want = module(a)
    (want_grad,) = torch.autograd.grad(want.erased, a, grad_out)
    assert torch.equal(got.region, want.region) and bool(want.region.any())
    assert torch.equal(got.erased, want.erased)
    assert torch.equal(got_grad, want_grad)
    assert bool((want.erased == 0).any())  # some pixels were dropped


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_compiled_cpu_op_dtypes(dtype: torch.dtype) -> None:
    torch._dynamo.reset()
    a = blobs(3, 17, 23, dtype=dtype).requires_grad_()
    compiled = torch.compile(
        lambda x: lowcam.attentive_erasing(x, erase_prob=1.0, backend="torch"), fullgraph=True
    )
    torch.manual_seed(5)
    got = compiled(a)
    (got_grad,) = torch.autograd.grad(got.erased.sum(), a)
    torch.manual_seed(5)
    want = lowcam.attentive_erasing(a, erase_prob=1.0, backend="torch")
    (want_grad,) = torch.autograd.grad(want.erased.sum(), a)
    assert got.erased.dtype == dtype and got_grad.dtype == dtype
    assert torch.equal(got.erased, want.erased) and torch.equal(got.region, want.region)
    assert torch.equal(got_grad, want_grad)


def test_cpu_compile_op_registration() -> None:
    # erase_prob=0 erases nothing, so the op is deterministic and torch.library.opcheck can compare its
    # runs. The op takes the detached map (the gradient is attached outside it), so no autograd kernel.
    from lowcam.ops.erasing_torch import attentive_erasing_cpu_op

    a = blobs(2, 9, 11, dtype=torch.float32)
    torch.library.opcheck(attentive_erasing_cpu_op, (a, 0.0, 0.0, 0.5, 1, 2, 0.6, 0.2, False))
    assert torch.Tag.nondeterministic_seeded in torch.ops.lowcam.attentive_erasing_torch.default.tags


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"p": torch.rand(2, 8, 8)}, ValueError, r"p must have shape \(B, 1, H, W\), got shape \(2, 8, 8\)"),
        ({"p": torch.rand(2, 2, 8, 8)}, ValueError, r"one channel, got shape \(2, 2, 8, 8\)"),
        (
            {"p": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)},
            TypeError,
            "p must have a floating dtype, got torch.uint8",
        ),
        ({"erase_prob": 1.5}, ValueError, r"erase_prob must be in \[0, 1\], got 1.5"),
        ({"erase_prob": -0.1}, ValueError, r"erase_prob must be in \[0, 1\], got -0.1"),
        ({"min_factor": -0.5}, ValueError, r"min_factor must be in \[0, 1\], got -0.5"),
        ({"max_factor": 2.0}, ValueError, r"max_factor must be in \[0, 1\], got 2.0"),
        ({"min_factor": 0.6, "max_factor": 0.5}, ValueError, "min_factor must be <= max_factor"),
        ({"min_size": -1}, ValueError, "min_size must be >= 0, got -1"),
        ({"min_size": 2.0}, ValueError, r"min_size given as a float is a fraction .* \(0, 1\), got 2.0"),
        ({"min_size": 1.0}, ValueError, r"must be in \(0, 1\), got 1.0"),
        ({"min_size": "4"}, TypeError, "min_size must be an int .* got str"),
        ({"min_size": True}, TypeError, "min_size must be an int .* got bool"),
        (
            {"backend": "bogus"},
            ValueError,
            r"backend must be one of \('auto', 'torch', 'triton'\), got 'bogus'",
        ),
        ({"scale": 0.9}, ValueError, "scale \\+ shift must be <= 1"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator or None, got int"),
    ],
)
def test_bad_input(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"p": torch.rand(2, 1, 8, 8)}
    args.update(kwargs)
    p = args.pop("p")
    with pytest.raises(error, match=match):
        lowcam.attentive_erasing(p, **args)  # type: ignore[arg-type]
    if "p" not in kwargs and "generator" not in kwargs:
        with pytest.raises(error, match=match):
            lowcam.AttentiveErasing(**args)  # type: ignore[arg-type]


def test_min_size_fraction_resolves_per_axis() -> None:
    params = ErasingParams(min_size=4 / 56)
    assert params.min_sizes(56, 56) == (4, 4)  # the reference's 4 pixels on its 56 × 56 maps
    assert params.min_sizes(7, 28) == (1, 2)  # nearest pixel, halves up: 0.5 -> 1, 2.0 -> 2
    assert params.min_sizes(14, 21) == (1, 2)  # 1.0 -> 1, 1.5 -> 2
    assert params.min_sizes(1, 3) == (1, 1)  # never below one pixel
    assert ErasingParams(min_size=0.25).min_sizes(10, 30) == (3, 8)  # 2.5 -> 3, 7.5 -> 8
    assert ErasingParams(min_size=4).min_sizes(7, 7) == (4, 4)  # an int is pixels, whatever the size


def test_pixel_default_is_inert_on_7x7_maps_and_a_fraction_is_not() -> None:
    # The usual CAM size: with min_size=4 pixels a region needs an extent > 9 per axis, impossible on 7 × 7.
    a = blobs(64, 7, 7, seed=5, dtype=torch.float32)
    pixels = run(a, 0, erase_prob=1.0)
    assert not pixels.region.any()
    assert pixels.was_erased.shape == (64,) and pixels.was_erased.dtype == torch.bool
    assert int(pixels.was_erased.sum()) == 0
    fraction = run(a, 0, erase_prob=1.0, min_size=4 / 56)
    erased = fraction.was_erased
    assert 0 < int(erased.sum()) <= 64
    assert torch.equal(erased, fraction.region.flatten(1).any(1))
    _, ref_region = reference_output(a, 0, erase_prob=1.0, min_size=4 / 56)
    assert torch.equal(fraction.region, ref_region)


def test_was_erased_counts_on_the_device_without_sync(device: str) -> None:
    a = blobs(32, 24, 24, seed=2).to(device)
    out = run(a, 1, erase_prob=0.5, min_size=1)
    assert out.was_erased.device == a.device
    assert torch.equal(out.was_erased, out.region.flatten(1).any(1))
    assert 0 < int(out.was_erased.sum()) < 32  # about half of the samples
    module = lowcam.AttentiveErasing(min_size=0.1).eval()
    assert not module(a).was_erased.any()


def test_unknown_backend_is_rejected_in_eval_mode_too() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        lowcam.attentive_erasing(torch.rand(1, 1, 4, 4), training=False, backend="bogus")  # type: ignore[arg-type]


def test_params_are_validated_once_and_frozen() -> None:
    module = lowcam.AttentiveErasing(erase_prob=0.3, min_size=0.1)
    assert module.params == ErasingParams(erase_prob=0.3, min_size=0.1)
    with pytest.raises(AttributeError):
        module.params.erase_prob = 0.9  # type: ignore[misc]
    assert "erase_prob=0.3" in repr(module) and "min_size=0.1" in repr(module)


def test_params_dataclass_is_the_schema_of_function_and_module() -> None:
    p = torch.rand(3, 1, 12, 12)
    params = lowcam.ErasingParams(erase_prob=1.0, max_factor=0.3, min_size=1)
    expected = lowcam.attentive_erasing(
        p, erase_prob=1.0, max_factor=0.3, min_size=1, generator=torch.Generator().manual_seed(2)
    )
    got = lowcam.attentive_erasing(p, params=params, generator=torch.Generator().manual_seed(2))
    assert torch.equal(got.erased, expected.erased) and torch.equal(got.region, expected.region)
    assert lowcam.AttentiveErasing(params=params).params is params
    with pytest.raises(TypeError, match=r"got params= and \['min_size'\]"):
        lowcam.attentive_erasing(p, min_size=2, params=params)
