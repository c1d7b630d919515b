"""weighted_entropy_loss / WeightedEntropyLoss (torch backend) against the plain reference."""

from __future__ import annotations

import pytest
import reference
import torch
from _helpers import tolerance

import lowcam

REDUCTIONS = ["none", "mean", "sum"]


def make_map(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float64, device: str = "cpu", seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 1, 7, 9), (3, 1, 5, 4), (2, 1, 16, 16)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("params", [(0.5, 0.1, 0.0), (0.3, 0.25, 0.1)])
def test_matches_reference_float64(
    shape: tuple[int, ...], reduction: str, params: tuple[float, float, float]
) -> None:
    mu, sigma, beta = params
    p = make_map(shape).requires_grad_()
    p_ref = p.detach().clone().requires_grad_()
    out = lowcam.weighted_entropy_loss(p, mu=mu, sigma=sigma, beta=beta, reduction=reduction, backend="torch")
    ref = reference.reduce(reference.weighted_entropy(p_ref, mu, sigma, beta), reduction)
    torch.testing.assert_close(out, ref, **tolerance(torch.float64))
    grad_out = torch.randn_like(out) * 3.0 + 0.5  # grad_output != 1
    out.backward(grad_out)
    ref.backward(grad_out)
    torch.testing.assert_close(p.grad, p_ref.grad, **tolerance(torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_low_precision_dtypes(device: str, dtype: torch.dtype, reduction: str) -> None:
    p = make_map((2, 1, 7, 9), dtype=dtype, device=device).requires_grad_()
    out = lowcam.weighted_entropy_loss(p, reduction=reduction, backend="torch")
    assert out.dtype == dtype and out.device == p.device
    ref = reference.reduce(reference.weighted_entropy(p.detach().cpu(), 0.5, 0.1, 0.0), reduction)
    torch.testing.assert_close(out.detach().cpu().double(), ref, **tolerance(dtype))
    out.sum().backward()
    assert p.grad is not None and p.grad.dtype == dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(reduction: str) -> None:
    # detach_weight=True is not a true derivative (finite differences see the weight move), so it is
    # checked against the reference's detached gradient in test_detach_weight_changes_only_the_gradient.
    p = (make_map((2, 1, 3, 5)) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: lowcam.weighted_entropy_loss(
            x, mu=0.45, sigma=0.2, beta=0.1, reduction=reduction, backend="torch"
        ),
        (p,),
    )


def test_detach_weight_changes_only_the_gradient() -> None:
    p = (make_map((1, 1, 4, 4)) * 0.4 + 0.3).requires_grad_()
    q = p.detach().clone().requires_grad_()
    a = lowcam.weighted_entropy_loss(p, backend="torch")
    b = lowcam.weighted_entropy_loss(q, detach_weight=True, backend="torch")
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    assert not torch.allclose(p.grad, q.grad)
    ref = q.detach().clone().requires_grad_()
    reference.reduce(reference.weighted_entropy(ref, 0.5, 0.1, 0.0, detach_weight=True), "mean").backward()
    torch.testing.assert_close(q.grad, ref.grad)


@pytest.mark.parametrize("layout", ["transposed", "sliced", "channels_last", "expanded"])
def test_non_contiguous_inputs(layout: str) -> None:
    base = make_map((3, 1, 9, 7))
    if layout == "transposed":
        p = base.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "sliced":
        p = make_map((3, 2, 18, 7))[:, :1, ::2]
        base = p.contiguous()
    elif layout == "channels_last":
        p = base.to(memory_format=torch.channels_last)
    else:
        p = base[:1].expand(3, 1, 9, 7)
        base = p.contiguous()
    assert not p.is_contiguous() or layout == "channels_last"
    out = lowcam.weighted_entropy_loss(p, reduction="none", backend="torch")
    torch.testing.assert_close(out, reference.weighted_entropy(base, 0.5, 0.1, 0.0))


def test_module_equals_function() -> None:
    p = make_map((2, 1, 6, 5))
    for reduction in REDUCTIONS:
        module = lowcam.WeightedEntropyLoss(
            mu=0.4, sigma=0.2, beta=0.05, detach_weight=True, reduction=reduction
        )
        expected = lowcam.weighted_entropy_loss(
            p, mu=0.4, sigma=0.2, beta=0.05, detach_weight=True, reduction=reduction
        )
        torch.testing.assert_close(module(p), expected, rtol=0, atol=0)
    assert "mu=0.4" in repr(module)


def test_compiled_equals_eager() -> None:
    torch._dynamo.reset()
    p = make_map((2, 1, 7, 9), dtype=torch.float32).requires_grad_()
    q = p.detach().clone().requires_grad_()
    compiled = torch.compile(lowcam.WeightedEntropyLoss(backend="torch"), fullgraph=True)
    eager = lowcam.WeightedEntropyLoss(backend="torch")
    out_c, out_e = compiled(p), eager(q)
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"p": torch.rand(2, 4, 4)}, ValueError, r"p must have shape \(B, 1, H, W\), got shape \(2, 4, 4\)"),
        ({"p": torch.rand(2, 3, 4, 4)}, ValueError, r"one channel, got shape \(2, 3, 4, 4\)"),
        (
            {"p": torch.ones(2, 1, 4, 4, dtype=torch.long)},
            TypeError,
            "p must have a floating dtype, got torch.int64",
        ),
        ({"p": [[0.5]]}, TypeError, "p must be a torch.Tensor, got list"),
        ({"sigma": 0.0}, ValueError, "sigma must be > 0, got 0.0"),
        ({"sigma": -1.0}, ValueError, "sigma must be > 0, got -1.0"),
        ({"sigma": 1e-200}, ValueError, r"sigma must be >= 3.83e-20 .* got 1e-200"),
        ({"sigma": 1e-20}, ValueError, r"1 / \(2 sigma\^2\) is a finite float32 number, got 1e-20"),
        ({"sigma": float("nan")}, ValueError, "sigma must be > 0, got nan"),
        ({"beta": -0.1}, ValueError, "beta must be >= 0, got -0.1"),
        ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
        ({"backend": "cuda"}, ValueError, "backend must be one of"),
    ],
)
def test_bad_input(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"p": torch.rand(2, 1, 4, 4)}
    args.update(kwargs)
    p = args.pop("p")
    with pytest.raises(error, match=match):
        lowcam.weighted_entropy_loss(p, **args)  # type: ignore[arg-type]


def test_bad_module_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="sigma must be > 0"):
        lowcam.WeightedEntropyLoss(sigma=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        lowcam.WeightedEntropyLoss(reduction="avg")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smallest_valid_sigma_gives_finite_values(dtype: torch.dtype) -> None:
    # 1 / (2 sigma^2) just below float32's maximum: the weight is 1 at mu and 0 elsewhere, no NaN.
    p = torch.tensor([0.25, 0.5, 0.75], dtype=dtype).view(1, 1, 1, 3).requires_grad_()
    loss = lowcam.weighted_entropy_loss(p, sigma=4e-20, reduction="none")
    assert bool(torch.isfinite(loss).all())
    torch.testing.assert_close(loss.flatten()[[0, 2]], torch.zeros(2, dtype=dtype))
    assert abs(float(loss.detach().flatten()[1]) - 0.6931) < 1e-3


def test_params_dataclass_is_the_schema_of_function_and_module() -> None:
    p = torch.rand(2, 1, 4, 4)
    params = lowcam.EntropyParams(mu=0.4, sigma=0.2, beta=0.1, detach_weight=True)
    expected = lowcam.weighted_entropy_loss(p, mu=0.4, sigma=0.2, beta=0.1, detach_weight=True)
    assert torch.equal(lowcam.weighted_entropy_loss(p, params=params), expected)
    assert torch.equal(lowcam.WeightedEntropyLoss(params=params)(p), expected)
    assert lowcam.WeightedEntropyLoss(0.4, 0.2, 0.1, True).params == params
    with pytest.raises(TypeError, match=r"got params= and \['sigma'\]"):
        lowcam.WeightedEntropyLoss(sigma=0.3, params=params)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        lowcam.EntropyParams(sigma=0.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_gives_what_torch_losses_give(reduction: str) -> None:
    p = torch.rand(0, 1, 4, 4)
    value = lowcam.weighted_entropy_loss(p, reduction=reduction)  # type: ignore[arg-type]
    reference = torch.nn.functional.binary_cross_entropy(p, p, reduction=reduction)
    assert value.shape == reference.shape and value.dtype == reference.dtype
    assert torch.equal(value.isnan(), reference.isnan()) and torch.allclose(value, reference, equal_nan=True)


def test_bf16_autocast_returns_float32_as_torch_losses_do() -> None:
    p = torch.rand(2, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = lowcam.WeightedEntropyLoss()(p.bfloat16())
        assert torch.nn.functional.binary_cross_entropy_with_logits(p.bfloat16(), p).dtype == torch.float32
    assert value.dtype == torch.float32
    assert torch.allclose(value, lowcam.weighted_entropy_loss(p.bfloat16().float()))
    assert lowcam.weighted_entropy_loss(p.bfloat16()).dtype == torch.bfloat16  # no autocast: p's dtype


@pytest.mark.parametrize(
    ("field", "value"),
    [("mu", float("nan")), ("beta", float("nan")), ("beta", float("inf")), ("sigma", float("inf"))],
)
def test_non_finite_hyper_parameters_are_named(field: str, value: float) -> None:
    # before: NaN / inf passed the checks (NaN < 0 is False) and the loss returned nan or inf
    with pytest.raises(ValueError, match=f"{field} must be"):
        lowcam.EntropyParams(**{field: value})
