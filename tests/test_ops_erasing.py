"""The Triton attentive-erasing kernel: exact semantics where they are deterministic, statistics elsewhere.

The Triton backend draws its random numbers with Philox inside the kernel, so it cannot reproduce the torch
backend's draws. Where the draws do not matter (factor fixed by ``min_factor == max_factor``, half-size
ranges of one value, ``p`` in {0, 1}) both backends must agree exactly; elsewhere the distributions are
checked with bounds of about 4.5 standard deviations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from _helpers import DTYPES, TOLERANCES, TRITON_DEVICE, TRITON_MARKS

import lowcam
from lowcam.erasing import attentive_erasing

triton = pytest.importorskip("triton")

DEVICE = TRITON_DEVICE
pytestmark = TRITON_MARKS

SIGMAS = 4.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def _blob_maps(batch: int, height: int = 13, width: int = 15, seed: int = 0) -> torch.Tensor:
    """Maps whose set ``P = {a > 0.5}`` spans exactly 7 × 7 pixels, max 1 (tied twice), min 0.

    With ``factor = 0.5`` the threshold is 0.5, both extents are 6, and with ``min_size = 2`` the half-size
    ranges ``[2, 3)`` hold one value each: the region does not depend on any random draw.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, 1, height, width, generator=g, dtype=torch.float64) * 0.3
    for b in range(batch):
        oy = int(torch.randint(0, height - 6, (1,), generator=g))
        ox = int(torch.randint(0, width - 6, (1,), generator=g))
        window = torch.where(
            torch.rand(7, 7, generator=g) < 0.6,
            0.55 + 0.4 * torch.rand(7, 7, generator=g, dtype=torch.float64),
            torch.rand(7, 7, generator=g, dtype=torch.float64) * 0.3,
        )
        edge = torch.randint(0, 7, (4,), generator=g)
        window[0, edge[0]] = window[6, edge[1]] = window[edge[2], 0] = window[edge[3], 6] = 0.8
        flat = torch.randperm(49, generator=g)[:2]
        window.view(-1)[flat] = 1.0  # two tied maxima: the first in row-major order is the peak
        a[b, 0, oy : oy + 7, ox : ox + 7] = window
        a[b, 0, (oy + 8) % height, (ox + 8) % width] = 0.0
    return a.to(DEVICE)


FIXED = {"erase_prob": 1.0, "min_factor": 0.5, "max_factor": 0.5, "min_size": 2}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "layout",
    [
        lambda t: t,
        lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
        lambda t: torch.nn.functional.pad(t, (1, 2, 0, 3))[:, :, :-3, 1:-2],
    ],
    ids=["contiguous", "transposed_strides", "padded_view"],
)
def test_deterministic_region_matches_torch(
    dtype: torch.dtype, layout: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    a = layout(_blob_maps(6).to(dtype))
    erased, region = attentive_erasing(a, generator=_gen(0), backend="triton", **FIXED)  # type: ignore[arg-type]
    ref_erased, ref_region = attentive_erasing(a, generator=_gen(0), backend="torch", **FIXED)  # type: ignore[arg-type]
    assert erased.dtype == dtype and region.dtype == torch.bool and erased.shape == a.shape
    assert torch.equal(region, ref_region)
    assert region.flatten(1).any(dim=1).all()  # every sample was erased
    rtol, atol = TOLERANCES[dtype]["backend"]
    torch.testing.assert_close(erased[~region], ref_erased[~region], rtol=rtol, atol=atol)
    squashed = ref_erased.masked_fill(region, 0.0) + (0.6 * a.double() + 0.2).to(dtype).masked_fill(
        ~region, 0.0
    )
    inside = erased[region]
    assert ((inside == 0) | torch.isclose(inside, squashed[region], rtol=rtol, atol=atol)).all()


def test_peak_is_the_first_maximum() -> None:
    a = torch.zeros(1, 1, 9, 9, dtype=torch.float64, device=DEVICE)
    a[0, 0, 1:8, 1:8] = 0.9
    a[0, 0, 2, 6] = a[0, 0, 6, 2] = 1.0  # tie: (2, 6) comes first in row-major order
    _, region = attentive_erasing(a, generator=_gen(1), backend="triton", **FIXED)  # type: ignore[arg-type]
    rows = region[0, 0].any(dim=1).nonzero().flatten().tolist()
    cols = region[0, 0].any(dim=0).nonzero().flatten().tolist()
    assert rows == [1, 2, 3] and cols == [5, 6, 7]


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 1, 7, 9), (3, 1, 1, 17)])
def test_small_maps_are_never_erased(shape: tuple[int, ...]) -> None:
    # Extents of at most 8 // 2 = 4 = min_size: the half-size ranges are empty.
    a = torch.rand(shape, device=DEVICE)
    erased, region = attentive_erasing(a, erase_prob=1.0, generator=_gen(2), backend="triton")
    assert not region.any()
    torch.testing.assert_close(erased, 0.6 * a + 0.2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_p_zero_is_the_squash(dtype: torch.dtype) -> None:
    a = _blob_maps(3).to(dtype)
    erased, region = attentive_erasing(a, erase_prob=0.0, generator=_gen(3), backend="triton")
    ref, _ = attentive_erasing(a, erase_prob=0.0, generator=_gen(3), backend="torch")
    assert not region.any()
    rtol, atol = TOLERANCES[dtype]["backend"]
    torch.testing.assert_close(erased, ref, rtol=rtol, atol=atol)


def _plateau_maps(batch: int) -> torch.Tensor:
    """17 × 17 maps with a 15 × 15 plateau of ones: ``P`` is the plateau, the peak its top-left corner."""
    a = torch.zeros(batch, 1, 17, 17, device=DEVICE)
    a[:, :, 1:16, 1:16] = 1.0
    return a


def test_share_of_erased_samples_and_half_sizes() -> None:
    # Extents 14: upper = 7, so hh, ww ~ U_int[2, 7); the box starts at the peak (the plateau's corner),
    # so the region of an erased sample is hh rows by ww columns.
    batch, p = 400, 0.5
    _, region = attentive_erasing(
        _plateau_maps(batch), erase_prob=p, min_factor=0.2, min_size=2, generator=_gen(4), backend="triton"
    )
    erased = region.flatten(1).any(dim=1)
    share = erased.double().mean().item()
    assert abs(share - p) < SIGMAS * math.sqrt(p * (1 - p) / batch)
    for dim in (2, 1):  # rows (hh), then columns (ww)
        sizes = region[erased, 0].any(dim=dim).sum(dim=1)
        counts = torch.bincount(sizes, minlength=8).double().cpu()
        assert counts[:2].sum() == 0 and counts[7:].sum() == 0
        expected = counts.sum() / 5
        chi2 = float(((counts[2:7] - expected) ** 2 / expected).sum())
        assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


def test_drop_rate_inside_the_region_is_the_squash() -> None:
    g = torch.Generator().manual_seed(6)
    a = (0.55 + 0.45 * torch.rand(32, 1, 32, 32, generator=g)).to(DEVICE)
    a[:, :, 0, 0] = 0.0
    erased, region = attentive_erasing(
        a, erase_prob=1.0, min_factor=0.4, max_factor=0.5, generator=_gen(6), backend="triton"
    )
    squashed = 0.6 * a + 0.2
    dropped = (erased == 0) & region
    assert torch.equal(erased[~dropped], squashed[~dropped])
    for low, high in ((0.0, 0.775), (0.775, 1.01)):  # two strata of a: the rate follows s = 0.6a + 0.2
        stratum = region & (a >= low) & (a < high)
        s = squashed[stratum].double()
        assert s.numel() > 2000
        drops = dropped[stratum].double().sum().item()
        assert abs(drops - s.sum().item()) < SIGMAS * math.sqrt((s * (1 - s)).sum().item())


def _ramp_maps(batch: int) -> torch.Tensor:
    """Every row is ``x / 20``: ``P = {x > 20 (1 - factor)}``, erasable (min_size 2) iff factor > 0.3."""
    return (torch.arange(21.0, device=DEVICE) / 20).expand(batch, 1, 9, 21).contiguous()


def test_one_factor_per_batch() -> None:
    decisions = []
    for seed in range(24):
        _, region = attentive_erasing(
            _ramp_maps(3), erase_prob=1.0, min_size=2, generator=_gen(100 + seed), backend="triton"
        )
        per_sample = region.flatten(1).any(dim=1)
        assert per_sample.all() or not per_sample.any()
        decisions.append(bool(per_sample.all()))
    assert any(decisions) and not all(decisions)


def test_per_sample_factor() -> None:
    batch = 256
    _, region = attentive_erasing(
        _ramp_maps(batch),
        erase_prob=1.0,
        min_size=2,
        per_sample_factor=True,
        generator=_gen(7),
        backend="triton",
    )
    share = region.flatten(1).any(dim=1).double().mean().item()
    assert abs(share - 0.4) < SIGMAS * math.sqrt(0.4 * 0.6 / batch)  # P(factor > 0.3), factor ~ U(0, 0.5)


def test_same_seed_same_output() -> None:
    a = _plateau_maps(8)
    kwargs = {"min_factor": 0.2, "min_size": 2, "backend": "triton"}
    first = attentive_erasing(a, generator=_gen(8), **kwargs)  # type: ignore[arg-type]
    second = attentive_erasing(a, generator=_gen(8), **kwargs)  # type: ignore[arg-type]
    other = attentive_erasing(a, generator=_gen(9), **kwargs)  # type: ignore[arg-type]
    assert first.region.any()
    assert torch.equal(first.erased, second.erased) and torch.equal(first.region, second.region)
    assert not torch.equal(first.erased, other.erased)
    module = lowcam.AttentiveErasing(min_factor=0.2, min_size=2, backend="triton")
    assert torch.equal(module(a, generator=_gen(8)).erased, first.erased)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_gradient(dtype: torch.dtype) -> None:
    a = _blob_maps(6).to(dtype).requires_grad_()
    erased, region = attentive_erasing(
        a, erase_prob=1.0, min_factor=0.3, min_size=2, generator=_gen(10), backend="triton"
    )
    assert region.any() and not region.requires_grad
    grad_out = torch.randn(a.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE, dtype)
    (grad,) = torch.autograd.grad(erased, a, grad_out)
    dropped = region & (erased == 0)
    assert dropped.any() and (region & ~dropped).any()
    expected = torch.where(dropped, 0.0, grad_out.double() * 0.6).to(dtype)
    rtol, atol = TOLERANCES[dtype]["backend"]
    torch.testing.assert_close(grad, expected, rtol=rtol, atol=atol)


def test_compile_fullgraph() -> None:
    a = _plateau_maps(4) * 0.9
    compiled = torch.compile(
        lambda x: attentive_erasing(x, erase_prob=1.0, min_factor=0.2, backend="triton"), fullgraph=True
    )
    leaf = a.clone().requires_grad_()
    erased, region = compiled(leaf)
    squashed = 0.6 * a + 0.2
    assert region.any()
    torch.testing.assert_close(erased[~region], squashed[~region])
    assert ((erased[region] == 0) | (erased[region] == squashed[region])).all()
    erased.sum().backward()
    assert leaf.grad is not None
    torch.testing.assert_close(leaf.grad, torch.where(region & (erased == 0), 0.0, 0.6))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_no_sync_and_graph_capture() -> None:
    a = torch.rand(16, 1, 56, 56, device="cuda", requires_grad=True)
    attentive_erasing(a, backend="triton")[0].sum().backward()
    generator = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        erased, _ = attentive_erasing(a, generator=generator, backend="triton")
        erased.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")

    static = _plateau_maps(16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            attentive_erasing(static, erase_prob=1.0, min_factor=0.2, backend="triton")
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        erased, region = attentive_erasing(static, erase_prob=1.0, min_factor=0.2, backend="triton")
    outputs = []
    for _ in range(2):
        graph.replay()
        torch.cuda.synchronize()
        outputs.append(erased.clone())
        squashed = 0.6 * static + 0.2
        assert region.any()
        torch.testing.assert_close(erased[~region], squashed[~region])
    assert not torch.equal(outputs[0], outputs[1])  # each replay draws new seeds
