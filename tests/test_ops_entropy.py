"""The Triton weighted entropy kernel against the torch backend (CPU through TRITON_INTERPRET=1, or CUDA)."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import DTYPES, TOLERANCES, TRITON_DEVICE, TRITON_MARKS

import lowcam
from lowcam.losses.entropy import weighted_entropy_loss

triton = pytest.importorskip("triton")

DEVICE = TRITON_DEVICE
pytestmark = TRITON_MARKS

REDUCTIONS = ["none", "mean", "sum"]
HYPER = {"mu": 0.45, "sigma": 0.13, "beta": 0.05}


def _map(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(shape, generator=g, dtype=torch.float64)
    p.view(-1)[:3] = torch.tensor([0.0, 1.0, HYPER["mu"]], dtype=torch.float64)[: p.numel()]
    return p.to(device=DEVICE, dtype=dtype)


def _both(p: torch.Tensor, grad_scale: float = 1.0, **kwargs: object) -> tuple[torch.Tensor, ...]:
    """Loss and gradient of both backends for the same random ``grad_output`` (times ``grad_scale``)."""
    results = []
    for backend in ("triton", "torch"):
        leaf = p.detach().clone().requires_grad_()
        loss = weighted_entropy_loss(leaf, backend=backend, **kwargs)  # type: ignore[arg-type]
        g = torch.Generator().manual_seed(1)
        grad_out = (torch.randn(loss.shape, generator=g, dtype=torch.float64) * grad_scale).to(loss)
        (grad,) = torch.autograd.grad(loss, leaf, grad_out)
        results += [loss, grad]
    return tuple(results)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    rtol, atol = TOLERANCES[dtype]["backend"]
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("detach_weight", [False, True])
def test_matches_torch(dtype: torch.dtype, reduction: str, detach_weight: bool) -> None:
    p = _map((3, 1, 7, 9), dtype)
    loss, grad, ref_loss, ref_grad = _both(p, reduction=reduction, detach_weight=detach_weight, **HYPER)
    assert loss.dtype == dtype
    _assert_close(loss, ref_loss, dtype)
    _assert_close(grad, ref_grad, dtype)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 1, 13), (1, 1, 37, 41), (5, 1, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_odd_shapes(shape: tuple[int, ...], reduction: str) -> None:
    # 37 × 41 = 1517 pixels: two blocks per sample, so the partial sums are combined.
    p = _map(shape, torch.float64)
    loss, grad, ref_loss, ref_grad = _both(p, reduction=reduction, **HYPER)
    _assert_close(loss, ref_loss, torch.float64)
    _assert_close(grad, ref_grad, torch.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.transpose(2, 3),
        lambda t: t[:, :, 1::2, ::3],
        lambda t: t.contiguous(memory_format=torch.channels_last),
        lambda t: t[:1].expand(4, -1, -1, -1),
    ],
    ids=["transposed", "sliced", "channels_last", "expanded_batch"],
)
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_non_contiguous(make: object, reduction: str) -> None:
    base = _map((4, 1, 9, 11), torch.float64)
    p = make(base)  # type: ignore[operator]
    results = []
    for backend in ("triton", "torch"):
        leaf = base.detach().clone().requires_grad_()
        view = make(leaf)  # type: ignore[operator]
        loss = weighted_entropy_loss(view, reduction=reduction, backend=backend, **HYPER)
        grad_out = torch.linspace(-2.0, 3.0, loss.numel(), dtype=loss.dtype, device=DEVICE).view(loss.shape)
        (grad,) = torch.autograd.grad(loss, leaf, grad_out)
        results += [loss, grad]
    assert p.shape == results[0].shape or reduction != "none"
    _assert_close(results[0], results[2], torch.float64)
    _assert_close(results[1], results[3], torch.float64)


def test_non_contiguous_grad_output() -> None:
    p = _map((2, 1, 6, 5), torch.float32)
    grad_out = torch.randn(2, 1, 5, 6, device=DEVICE).transpose(2, 3)
    grads = []
    for backend in ("triton", "torch"):
        leaf = p.clone().requires_grad_()
        loss = weighted_entropy_loss(leaf, reduction="none", backend=backend, **HYPER)
        grads.append(torch.autograd.grad(loss, leaf, grad_out)[0])
    _assert_close(grads[0], grads[1], torch.float32)


def test_fp16_gradient_is_not_rounded_before_the_loss_scale() -> None:
    # A large map and a GradScaler-like grad_output: dℓ/dp / N is below float16's normal range, so a
    # kernel that stored the scaled local gradient in float16 would lose most of its bits.
    p = _map((2, 1, 64, 64), torch.float16)
    loss, grad, ref_loss, ref_grad = _both(p, grad_scale=65536.0, reduction="mean", **HYPER)
    _assert_close(loss, ref_loss, torch.float16)
    _assert_close(grad, ref_grad, torch.float16)


def test_known_values() -> None:
    p = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, device=DEVICE).view(1, 1, 1, 3)
    loss = weighted_entropy_loss(p, reduction="none", backend="triton").flatten()
    eps = 1.1920928955078125e-07
    edge = -math.log1p(eps) * math.exp(-(0.5**2) / 0.02)  # p = 0 or 1: -log(1 + eps) · w
    middle = -math.log(0.5 + eps)  # p = mu: w = 1, entropy = -log(0.5 + eps)
    expected = torch.tensor([edge, middle, edge], dtype=torch.float64)
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-12, atol=1e-15)


def test_gradient_work_is_skipped_when_not_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    from lowcam.ops import entropy as ops_entropy

    calls: list[bool] = []
    forward = ops_entropy._entropy_fwd

    def spy(*args: object) -> object:
        calls.append(bool(args[-1]))  # need_grad
        out = forward(*args)
        assert (out[1].numel() > 0) == calls[-1]
        return out

    monkeypatch.setattr(ops_entropy, "_entropy_fwd", spy)
    p = _map((2, 1, 5, 5), torch.float32).requires_grad_()
    with torch.no_grad():
        value = weighted_entropy_loss(p, backend="triton")
    weighted_entropy_loss(p.detach(), backend="triton")
    weighted_entropy_loss(p, backend="triton").backward()
    assert calls == [False, False, True]
    assert not value.requires_grad
    torch.testing.assert_close(value, weighted_entropy_loss(p.detach(), backend="torch"))


def test_module_matches_function() -> None:
    p = _map((2, 1, 6, 7), torch.float32)
    module = lowcam.WeightedEntropyLoss(reduction="sum", backend="triton", **HYPER)
    torch.testing.assert_close(
        module(p), weighted_entropy_loss(p, reduction="sum", backend="triton", **HYPER)
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compile_fullgraph(reduction: str) -> None:
    p = _map((2, 1, 5, 6), torch.float32)
    compiled = torch.compile(
        lambda x: weighted_entropy_loss(x, reduction=reduction, backend="triton", **HYPER), fullgraph=True
    )
    results = []
    for fn in (compiled, lambda x: weighted_entropy_loss(x, reduction=reduction, backend="torch", **HYPER)):
        leaf = p.clone().requires_grad_()
        loss = fn(leaf)
        (grad,) = torch.autograd.grad(loss, leaf, torch.full_like(loss, 1.5))
        results += [loss, grad]
    _assert_close(results[0], results[2], torch.float32)
    _assert_close(results[1], results[3], torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_no_sync_and_graph_capture() -> None:
    p = torch.rand(4, 1, 56, 56, device="cuda", requires_grad=True)
    weighted_entropy_loss(p, backend="triton").backward()  # compile the kernels before the checks
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        p.grad = None
        weighted_entropy_loss(p, backend="triton").backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")

    static = torch.rand(4, 1, 56, 56, device="cuda", requires_grad=True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            static.grad = None
            weighted_entropy_loss(static, backend="triton").backward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    static.grad = None
    with torch.cuda.graph(graph):
        loss = weighted_entropy_loss(static, backend="triton")
        loss.backward()
    with torch.no_grad():
        static.copy_(torch.rand_like(static))
    graph.replay()
    torch.cuda.synchronize()
    ref = static.detach().clone().requires_grad_()
    ref_loss = weighted_entropy_loss(ref, backend="torch")
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert static.grad is not None and ref.grad is not None
    torch.testing.assert_close(static.grad, ref.grad, rtol=1e-5, atol=1e-7)
