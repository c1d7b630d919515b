"""Evaluator: frozen classifier, gradient to the maps, modes, upsampling, helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lowcam


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def test_masks_the_image_with_the_upsampled_map() -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net)
    images = torch.randn(2, 3, 16, 16)
    maps = torch.rand(2, 1, 4, 4)
    expected = net(images * maps.repeat_interleave(4, 2).repeat_interleave(4, 3))
    torch.testing.assert_close(evaluator(images, maps), expected)
    torch.testing.assert_close(evaluator(images), net(images))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest-exact", "area"])
def test_other_upsampling_modes(mode: str) -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net, upsample=mode)  # type: ignore[arg-type]
    images, maps = torch.randn(2, 3, 15, 15), torch.rand(2, 1, 5, 5)
    align = False if mode in ("bilinear", "bicubic") else None
    expected = net(images * F.interpolate(maps, size=(15, 15), mode=mode, align_corners=align))
    torch.testing.assert_close(evaluator(images, maps), expected)


def test_frozen_but_gradient_flows_to_maps() -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net)
    maps = torch.rand(2, 1, 4, 4, requires_grad=True)
    evaluator(torch.randn(2, 3, 16, 16), maps).logsumexp(1).sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())


def test_stays_frozen_when_a_parent_unfreezes_everything() -> None:
    net = classifier()
    parent = nn.ModuleDict({"evaluator": lowcam.Evaluator(net), "head": nn.Linear(2, 2)})
    parent.requires_grad_(True)
    maps = torch.rand(2, 1, 4, 4, requires_grad=True)
    parent["evaluator"](torch.randn(2, 3, 16, 16), maps).sum().backward()
    assert maps.grad is not None
    assert all(p.grad is None for p in net.parameters())


def test_held_in_eval_mode_by_default() -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net).train()
    assert evaluator.training and not net.training
    running = net[1].running_mean.clone()
    images = torch.randn(4, 3, 8, 8)
    first, second = evaluator(images), evaluator(images)
    torch.testing.assert_close(first, second)  # dropout off
    assert torch.equal(net[1].running_mean, running)  # BN statistics fixed


def test_follow_parent_mode_reproduces_the_reference() -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net, follow_parent_mode=True).train()
    assert net.training
    running = net[1].running_mean.clone()
    evaluator(torch.randn(4, 3, 8, 8))
    assert not torch.equal(net[1].running_mean, running)
    evaluator.eval()
    assert not net.training


def test_topk_and_predict() -> None:
    net = classifier()
    evaluator = lowcam.Evaluator(net)
    images = torch.randn(3, 3, 8, 8)
    logits = net.eval()(images)
    assert torch.equal(evaluator.topk(images, k=5), logits.topk(5, dim=1).indices)
    assert torch.equal(evaluator.predict(images), logits.argmax(1))


def test_compiled_equals_eager() -> None:
    torch._dynamo.reset()
    evaluator = lowcam.Evaluator(classifier())
    images, maps = torch.randn(2, 3, 16, 16), torch.rand(2, 1, 4, 4)
    compiled = torch.compile(evaluator, fullgraph=True)
    torch.testing.assert_close(compiled(images, maps), evaluator(images, maps), rtol=1e-4, atol=1e-5)


def test_bad_input() -> None:
    evaluator = lowcam.Evaluator(classifier())
    with pytest.raises(ValueError, match=r"maps must have shape \(B, 1, h, w\), got shape \(2, 4, 4\)"):
        evaluator(torch.randn(2, 3, 8, 8), torch.rand(2, 4, 4))
    with pytest.raises(
        ValueError, match=r"maps must have shape \(B, 1, h, w\) with one channel, got shape \(2, 3, 4, 4\)"
    ):
        evaluator(torch.randn(2, 3, 8, 8), torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"maps of shape \(3, 1, 4, 4\) does not match images"):
        evaluator(torch.randn(2, 3, 8, 8), torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="upsample must be one of"):
        lowcam.Evaluator(classifier(), upsample="linear")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="classifier must be a torch.nn.Module, got function"):
        lowcam.Evaluator(lambda x: x)  # type: ignore[arg-type]


def test_topk_larger_than_the_number_of_classes_is_a_clear_error() -> None:
    evaluator = lowcam.Evaluator(classifier())
    images = torch.randn(2, 3, 8, 8)
    classes = evaluator(images).shape[1]
    assert evaluator.topk(images, k=classes).shape == (2, classes)
    with pytest.raises(
        ValueError, match=rf"k must be <= the number of classes C={classes}, got k={classes + 1}"
    ):
        evaluator.topk(images, k=classes + 1)


def test_copy_leaves_a_shared_classifier_trainable_and_the_docstring_says_so() -> None:
    shared = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    evaluator = lowcam.Evaluator(shared, copy=True)
    assert all(p.requires_grad for p in shared.parameters()) and shared.training
    assert not any(p.requires_grad for p in evaluator.classifier.parameters())
    assert evaluator.classifier is not shared and not evaluator.classifier.training
    lowcam.Evaluator(shared)  # the default freezes in place, as documented
    assert not any(p.requires_grad for p in shared.parameters())
    doc = lowcam.Evaluator.__doc__ or ""
    assert "frozen in place" in doc and "copy=True" in doc
    for mode in ("nearest", "nearest-exact", "bilinear", "bicubic", "area"):
        assert f'``"{mode}"``' in doc, mode
