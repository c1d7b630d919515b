"""The Triton area-loss kernels against the torch backend (CPU through TRITON_INTERPRET=1, or CUDA)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from _helpers import DTYPES, TOLERANCES, TRITON_DEVICE, TRITON_MARKS

import lowcam
from lowcam.losses.area import area_loss

triton = pytest.importorskip("triton")

DEVICE = TRITON_DEVICE
pytestmark = TRITON_MARKS

REDUCTIONS = ["none", "mean", "sum"]


def _inputs(
    batch: int, classes: int, height: int, width: int, dtype: torch.dtype, f_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch * 1000 + classes)
    p = torch.rand(batch, 1, height, width, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    maps = torch.randn(batch, classes, height, width, generator=g, dtype=torch.float64).to(
        DEVICE, f_dtype or dtype
    )
    logits = torch.randn(batch, classes, generator=g).to(DEVICE)
    return p, maps, logits


def _run(
    p: torch.Tensor,
    maps: torch.Tensor,
    logits: torch.Tensor,
    backend: str,
    view: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss and the gradients of ``p`` and of the class maps for a fixed ``grad_output != 1``."""
    p_leaf = p.detach().clone().requires_grad_()
    maps_leaf = maps.detach().clone().requires_grad_()
    loss = area_loss(p_leaf, view(maps_leaf), logits, backend=backend, **kwargs)  # type: ignore[arg-type]
    grad_out = torch.linspace(-1.5, 2.5, loss.numel(), dtype=torch.float64).view(loss.shape).to(loss)
    grad_p, grad_maps = torch.autograd.grad(loss, (p_leaf, maps_leaf), grad_out, allow_unused=True)
    if grad_maps is None:  # topk = 0: no class term
        grad_maps = torch.zeros_like(maps)
    return loss, grad_p, grad_maps


def _assert_same(
    actual: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...], dtype: torch.dtype
) -> None:
    rtol, atol = TOLERANCES[dtype]["backend"]
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(dtype: torch.dtype, reduction: str) -> None:
    p, maps, logits = _inputs(3, 12, 7, 9, dtype)
    kwargs = {"topk": 6, "skip": 2, "reduction": reduction}
    result = _run(p, maps, logits, "triton", **kwargs)
    assert result[0].dtype == dtype
    _assert_same(result, _run(p, maps, logits, "torch", **kwargs), dtype)


@pytest.mark.parametrize(
    ("p_dtype", "f_dtype"), [(torch.float32, torch.bfloat16), (torch.float16, torch.float64)], ids=str
)
def test_mixed_dtypes(p_dtype: torch.dtype, f_dtype: torch.dtype) -> None:
    p, maps, logits = _inputs(2, 8, 5, 6, p_dtype, f_dtype)
    result = _run(p, maps, logits, "triton", topk=4, skip=1, reduction="none")
    expected = _run(p, maps, logits, "torch", topk=4, skip=1, reduction="none")
    assert result[0].dtype == torch.promote_types(p_dtype, f_dtype)
    _assert_same(result[:1], expected[:1], torch.float64 if f_dtype == torch.float64 else torch.bfloat16)
    _assert_same(result[1:2], expected[1:2], p_dtype)
    _assert_same(result[2:], expected[2:], f_dtype)


@pytest.mark.parametrize(
    ("shape", "topk", "skip"),
    [
        ((1, 1, 1, 1), 1, 0),  # one class, one pixel
        ((2, 5, 1, 13), 0, 0),  # topk = 0: p's term only
        ((2, 5, 4, 3), 5, 0),  # every class
        ((1, 30, 33, 33), 25, 3),  # 1089 pixels: more than one block per plane; the reference's defaults
        ((5, 4, 3, 2), 3, 2),  # one class term per sample
    ],
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_odd_shapes(shape: tuple[int, int, int, int], topk: int, skip: int, reduction: str) -> None:
    p, maps, logits = _inputs(*shape, torch.float64)
    kwargs = {"topk": topk, "skip": skip, "reduction": reduction}
    _assert_same(
        _run(p, maps, logits, "triton", **kwargs), _run(p, maps, logits, "torch", **kwargs), torch.float64
    )


@pytest.mark.parametrize(
    "view",
    [
        lambda t: t.contiguous(memory_format=torch.channels_last),
        lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
        lambda t: t[:, :, :, :],
    ],
    ids=["channels_last", "hw_transposed", "identity_view"],
)
def test_non_contiguous_class_maps(view: Callable[[torch.Tensor], torch.Tensor]) -> None:
    p, maps, logits = _inputs(3, 10, 6, 7, torch.float64)
    kwargs = {"topk": 5, "skip": 1, "reduction": "none", "view": view}
    result = _run(p, maps, logits, "triton", **kwargs)
    _assert_same(result, _run(p, maps, logits, "torch", **kwargs), torch.float64)


def test_non_contiguous_p_and_sliced_maps() -> None:
    p, maps, logits = _inputs(2, 9, 8, 10, torch.float32)
    p_view = p.transpose(2, 3)[:, :, 1:7:2]  # (2, 1, 3, 8), strided
    maps_view = maps.transpose(2, 3)[:, :, 1:7:2]
    kwargs = {"topk": 4, "skip": 1, "reduction": "sum"}
    loss = area_loss(p_view, maps_view, logits, backend="triton", **kwargs)  # type: ignore[arg-type]
    expected = area_loss(p_view, maps_view, logits, backend="torch", **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_channels_last_gradient_keeps_the_layout() -> None:
    p, maps, logits = _inputs(2, 6, 4, 5, torch.float32)
    maps = maps.contiguous(memory_format=torch.channels_last).requires_grad_()
    area_loss(p, maps, logits, topk=3, skip=1, backend="triton").backward()
    assert maps.grad is not None and maps.grad.is_contiguous(memory_format=torch.channels_last)


def test_reads_only_the_selected_channels() -> None:
    p, maps, logits = _inputs(2, 10, 5, 5, torch.float32)
    selected = torch.topk(logits, 4, dim=1).indices[:, 1:]
    poisoned = torch.full_like(maps, float("nan"))
    batch = torch.arange(2, device=DEVICE).unsqueeze(1)
    poisoned[batch, selected] = maps[batch, selected]
    poisoned.requires_grad_()
    loss = area_loss(p, poisoned, logits, topk=4, skip=1, reduction="none", backend="triton")
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(
        loss, area_loss(p, maps, logits, topk=4, skip=1, reduction="none", backend="torch")
    )
    loss.sum().backward()
    assert poisoned.grad is not None
    nonzero = poisoned.grad.flatten(2).ne(0).any(dim=2)
    expected = torch.zeros_like(nonzero)
    expected[batch, selected] = True
    assert torch.equal(nonzero, expected)


def test_gradient_to_one_input_only() -> None:
    p, maps, logits = _inputs(2, 7, 4, 4, torch.float32)
    maps.requires_grad_()
    area_loss(p, maps, logits, topk=3, skip=0, backend="triton").backward()
    assert maps.grad is not None and p.grad is None
    p.requires_grad_()
    maps.grad = None
    area_loss(p, maps.detach(), logits, topk=3, skip=0, backend="triton").backward()
    assert p.grad is not None
    torch.testing.assert_close(p.grad, torch.full_like(p, 1.0 / (2 * 16)))


def test_module_matches_function() -> None:
    p, maps, logits = _inputs(2, 8, 5, 5, torch.float32)
    module = lowcam.AreaLoss(topk=5, skip=2, reduction="none", backend="triton")
    torch.testing.assert_close(
        module(p, maps, logits),
        area_loss(p, maps, logits, topk=5, skip=2, reduction="none", backend="triton"),
    )


def test_compile_fullgraph() -> None:
    p, maps, logits = _inputs(2, 12, 5, 6, torch.float32)
    compiled = torch.compile(
        lambda a, f, z: area_loss(a, f, z, topk=5, skip=2, backend="triton"), fullgraph=True
    )
    results = []
    for fn in (compiled, lambda a, f, z: area_loss(a, f, z, topk=5, skip=2, backend="torch")):
        p_leaf = p.clone().requires_grad_()
        maps_leaf = maps.clone().requires_grad_()
        loss = fn(p_leaf, maps_leaf, logits)
        results += [loss, *torch.autograd.grad(loss, (p_leaf, maps_leaf), torch.tensor(0.75, device=DEVICE))]
    _assert_same(tuple(results[:3]), tuple(results[3:]), torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_no_sync_and_graph_capture() -> None:
    p = torch.rand(8, 1, 56, 56, device="cuda", requires_grad=True)
    maps = torch.randn(8, 200, 56, 56, device="cuda", requires_grad=True)
    logits = torch.randn(8, 200, device="cuda")
    area_loss(p, maps, logits, backend="triton").backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        area_loss(p, maps, logits, backend="triton").backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            p.grad = maps.grad = None
            area_loss(p, maps, logits, backend="triton").backward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    p.grad = maps.grad = None
    with torch.cuda.graph(graph):
        loss = area_loss(p, maps, logits, backend="triton")
        loss.backward()
    with torch.no_grad():
        maps.copy_(torch.randn_like(maps))
        logits.copy_(torch.randn_like(logits))
    graph.replay()
    torch.cuda.synchronize()
    ref_p = p.detach().clone().requires_grad_()
    ref_maps = maps.detach().clone().requires_grad_()
    ref = area_loss(ref_p, ref_maps, logits, backend="torch")
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert maps.grad is not None and ref_maps.grad is not None
    torch.testing.assert_close(maps.grad, ref_maps.grad)
