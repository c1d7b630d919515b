"""area_loss / AreaLoss (torch backend) against the plain reference."""

from __future__ import annotations

import pytest
import reference
import torch
from _helpers import tolerance

import lowcam

REDUCTIONS = ["none", "mean", "sum"]


def make_inputs(
    batch: int,
    classes: int,
    height: int,
    width: int,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, 1, height, width, generator=g, dtype=torch.float64)
    maps = torch.randn(batch, classes, height, width, generator=g, dtype=torch.float64)
    logits = torch.randn(batch, classes, generator=g, dtype=torch.float64)
    return p.to(device, dtype), maps.to(device, dtype), logits.to(device, dtype)


@pytest.mark.parametrize(
    ("batch", "classes", "height", "width"), [(1, 5, 1, 1), (1, 30, 7, 9), (4, 12, 5, 4), (3, 40, 8, 8)]
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("topk", "skip"), [(25, 3), (5, 0), (1, 0), (0, 3)])
def test_matches_reference_float64(
    batch: int, classes: int, height: int, width: int, reduction: str, topk: int, skip: int
) -> None:
    topk = min(topk, classes)
    skip = min(skip, max(topk - 1, 0)) if topk else skip
    p, maps, logits = make_inputs(batch, classes, height, width)
    p.requires_grad_()
    maps.requires_grad_()
    p_ref, maps_ref = p.detach().clone().requires_grad_(), maps.detach().clone().requires_grad_()
    out = lowcam.area_loss(p, maps, logits, topk=topk, skip=skip, reduction=reduction, backend="torch")
    ref = reference.reduce(reference.area_loss_per_sample(p_ref, maps_ref, logits, topk, skip), reduction)
    torch.testing.assert_close(out, ref, **tolerance(torch.float64))
    grad_out = torch.randn_like(out) - 2.0
    out.backward(grad_out)
    ref.backward(grad_out)
    torch.testing.assert_close(p.grad, p_ref.grad, **tolerance(torch.float64))
    torch.testing.assert_close(maps.grad, maps_ref.grad, **tolerance(torch.float64))


def test_gradient_reaches_only_the_penalised_channels() -> None:
    p, maps, logits = make_inputs(2, 10, 4, 4)
    maps.requires_grad_()
    lowcam.area_loss(p, maps, logits, topk=6, skip=2, backend="torch").backward()
    ranked = logits.argsort(dim=1, descending=True)
    touched = maps.grad.abs().flatten(2).amax(2) > 0
    for b in range(2):
        assert set(touched[b].nonzero().flatten().tolist()) == set(ranked[b, 2:6].tolist())


def test_logits_get_no_gradient() -> None:
    p, maps, logits = make_inputs(2, 8, 3, 3)
    logits.requires_grad_()
    maps.requires_grad_()
    lowcam.area_loss(p, maps, logits, topk=4, skip=1, backend="torch").backward()
    assert logits.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_low_precision_dtypes(device: str, dtype: torch.dtype, reduction: str) -> None:
    p, maps, logits = make_inputs(3, 30, 7, 5, dtype=dtype, device=device)
    maps.requires_grad_()
    out = lowcam.area_loss(p, maps, logits, reduction=reduction, backend="torch")
    assert out.dtype == dtype and out.device == p.device
    ref = reference.reduce(
        reference.area_loss_per_sample(p.cpu(), maps.detach().cpu(), logits.cpu(), 25, 3), reduction
    )
    torch.testing.assert_close(out.detach().cpu().double(), ref, **tolerance(dtype))
    out.sum().backward()
    assert maps.grad is not None and maps.grad.dtype == dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(reduction: str) -> None:
    p, maps, logits = make_inputs(2, 7, 3, 4)
    assert torch.autograd.gradcheck(
        lambda a, f: lowcam.area_loss(a, f, logits, topk=5, skip=2, reduction=reduction, backend="torch"),
        (p.requires_grad_(), maps.requires_grad_()),
    )


def test_non_contiguous_and_channels_last() -> None:
    p, maps, logits = make_inputs(3, 12, 9, 7)
    expected = lowcam.area_loss(p, maps, logits, topk=6, skip=1, reduction="none", backend="torch")
    maps_t = maps.transpose(2, 3).contiguous().transpose(2, 3)
    maps_cl = maps.to(memory_format=torch.channels_last)
    logits_nc = torch.stack([logits, logits], dim=2)[..., 0]
    assert not maps_t.is_contiguous() and not logits_nc.is_contiguous()
    for m in (maps_t, maps_cl):
        out = lowcam.area_loss(
            p.transpose(2, 3).contiguous().transpose(2, 3),
            m,
            logits_nc,
            topk=6,
            skip=1,
            reduction="none",
            backend="torch",
        )
        torch.testing.assert_close(out, expected)


def test_module_equals_function() -> None:
    p, maps, logits = make_inputs(2, 9, 4, 5)
    for reduction in REDUCTIONS:
        module = lowcam.AreaLoss(topk=7, skip=2, reduction=reduction)
        torch.testing.assert_close(
            module(p, maps, logits),
            lowcam.area_loss(p, maps, logits, topk=7, skip=2, reduction=reduction),
            rtol=0,
            atol=0,
        )
    assert "topk=7" in repr(module)


def test_compiled_equals_eager() -> None:
    torch._dynamo.reset()
    p, maps, logits = make_inputs(3, 30, 7, 9, dtype=torch.float32)
    maps_c = maps.clone().requires_grad_()
    maps_e = maps.clone().requires_grad_()
    compiled = torch.compile(lowcam.AreaLoss(backend="torch"), fullgraph=True)
    out_c = compiled(p, maps_c, logits)
    out_e = lowcam.AreaLoss(backend="torch")(p, maps_e, logits)
    torch.testing.assert_close(out_c, out_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(maps_c.grad, maps_e.grad)


def test_mixed_dtypes_promote() -> None:
    p, maps, logits = make_inputs(2, 6, 3, 3, dtype=torch.float32)
    out = lowcam.area_loss(p.half(), maps, logits.half(), topk=3, skip=1)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"p": torch.rand(2, 4, 4)}, ValueError, r"p must have shape \(B, 1, H, W\), got shape \(2, 4, 4\)"),
        (
            {"class_maps": torch.rand(2, 30, 4)},
            ValueError,
            r"class_maps must have shape \(B, C, H, W\), got shape \(2, 30, 4\)",
        ),
        (
            {"logits": torch.rand(2, 30, 1)},
            ValueError,
            r"logits must have shape \(B, C\), got shape \(2, 30, 1\)",
        ),
        (
            {"class_maps": torch.rand(3, 30, 4, 4)},
            ValueError,
            r"class_maps of shape \(3, 30, 4, 4\) does not match p",
        ),
        (
            {"class_maps": torch.rand(2, 30, 4, 5)},
            ValueError,
            r"class_maps of shape \(2, 30, 4, 5\) does not match p",
        ),
        ({"logits": torch.rand(2, 29)}, ValueError, r"logits of shape \(2, 29\) does not match class_maps"),
        (
            {"class_maps": torch.ones(2, 30, 4, 4, dtype=torch.int32)},
            TypeError,
            "class_maps must have a floating dtype",
        ),
        ({"logits": torch.zeros(2, 30, dtype=torch.bool)}, TypeError, "logits must be real scores"),
        ({"logits": torch.rand(2, 30, device="meta")}, ValueError, "logits is on meta but p is on cpu"),
        ({"topk": 31}, ValueError, "topk must be <= the number of classes C=30, got topk=31"),
        ({"skip": 25}, ValueError, "skip must be < topk"),
        ({"topk": -1}, ValueError, "topk must be >= 0, got -1"),
        ({"topk": 2.5}, TypeError, "topk must be an int, got float"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ],
)
def test_bad_input(change: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {
        "p": torch.rand(2, 1, 4, 4),
        "class_maps": torch.rand(2, 30, 4, 4),
        "logits": torch.rand(2, 30),
    }
    args.update(change)
    tensors = [args.pop(k) for k in ("p", "class_maps", "logits")]
    with pytest.raises(error, match=match):
        lowcam.area_loss(*tensors, **args)  # type: ignore[arg-type]


def test_params_dataclass_is_the_schema_of_function_and_module() -> None:
    p, maps, logits = torch.rand(2, 1, 4, 4), torch.rand(2, 6, 4, 4), torch.randn(2, 6)
    params = lowcam.AreaLossParams(topk=4, skip=1)
    expected = lowcam.area_loss(p, maps, logits, topk=4, skip=1)
    assert torch.equal(lowcam.area_loss(p, maps, logits, params=params), expected)
    assert torch.equal(lowcam.AreaLoss(params=params)(p, maps, logits), expected)
    assert lowcam.AreaLoss(topk=4, skip=1).params == params
    with pytest.raises(
        TypeError, match=r"either as params= or as keyword arguments, got params= and \['topk'\]"
    ):
        lowcam.area_loss(p, maps, logits, topk=5, params=params)
    with pytest.raises(TypeError, match="params must be a AreaLossParams or None, got dict"):
        lowcam.AreaLoss(params={"topk": 4})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="skip must be < topk"):
        lowcam.AreaLossParams(topk=2, skip=2)


def test_map_only_term_needs_no_class_maps_or_logits() -> None:
    p = torch.rand(3, 1, 5, 5)
    expected = p.mean(dim=(1, 2, 3))
    assert torch.allclose(lowcam.area_loss(p, topk=0, reduction="none"), expected)
    assert torch.allclose(lowcam.AreaLoss(topk=0)(p), expected.mean())
    with pytest.raises(ValueError, match="class_maps and logits are needed unless topk=0"):
        lowcam.area_loss(p)


def test_fewer_classes_than_the_default_topk_names_the_fix() -> None:
    p, maps, logits = torch.rand(2, 1, 4, 4), torch.rand(2, 10, 4, 4), torch.randn(2, 10)
    with pytest.raises(ValueError, match=r"topk=min\(25, C\) = 10"):
        lowcam.AreaLoss()(p, maps, logits)
    small = lowcam.AreaLoss(topk=min(25, 10))(p, maps, logits)  # the documented use for small C
    assert torch.isfinite(small)


@pytest.mark.parametrize(("reduction", "expected"), [("mean", float("nan")), ("sum", 0.0)])
def test_empty_batch_gives_what_torch_losses_give(reduction: str, expected: float) -> None:
    p, maps, logits = torch.rand(0, 1, 4, 4), torch.rand(0, 6, 4, 4), torch.randn(0, 6)
    value = lowcam.area_loss(p, maps, logits, topk=4, skip=1, reduction=reduction)  # type: ignore[arg-type]
    reference = torch.nn.functional.mse_loss(torch.rand(0), torch.rand(0), reduction=reduction)
    assert value.shape == () and value.dtype == torch.float32
    assert torch.equal(value.isnan(), reference.isnan()) and (value.isnan() or value == expected)
    assert lowcam.area_loss(p, maps, logits, topk=4, skip=1, reduction="none").shape == (0,)


def test_bf16_autocast_returns_float32_as_torch_losses_do() -> None:
    p, maps, logits = torch.rand(2, 1, 4, 4), torch.rand(2, 6, 4, 4), torch.randn(2, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = lowcam.area_loss(p.bfloat16(), maps.bfloat16(), logits, topk=4, skip=1)
        assert (
            torch.nn.functional.cross_entropy(logits.bfloat16(), torch.tensor([0, 1])).dtype == torch.float32
        )
    assert value.dtype == torch.float32
    assert lowcam.area_loss(p.bfloat16(), maps.bfloat16(), logits, topk=4, skip=1).dtype == torch.bfloat16
