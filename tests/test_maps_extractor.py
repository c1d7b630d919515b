"""lowcam.maps.ClassActivationMapper / class_activation_maps: CAMs of unmodified torchvision and timm
classifiers, against a hand computation (features @ head weight) and the real torchcam and pytorch-grad-cam."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lowcam
from lowcam.maps import ClassActivationMapper, class_activation_maps
from lowcam.metrics import BoxAccuracy, prepare_scoremap


def _resnet18(classes: int = 6) -> nn.Module:
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=classes).eval()


def _hand_cams(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CAM written out: a plain loop over classes, sum over channels of W[c, k] · features[:, k]."""
    return torch.stack(
        [(weight[c].view(1, -1, 1, 1) * features).sum(1) for c in range(weight.shape[0])], dim=1
    )


def _snapshot(model: nn.Module) -> dict[str, Any]:
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    return {"hooks": hooks, "state": {k: v.clone() for k, v in model.state_dict().items()}}


def test_torchvision_resnet18_equals_the_hand_computed_cam_and_leaves_the_model_unchanged() -> None:
    model = _resnet18()
    images = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    before = _snapshot(model)
    mapper = ClassActivationMapper(model)
    with torch.no_grad():
        logits, cams = mapper.forward(images)
        features = nn.Sequential(*list(model.children())[:-2])(images)  # conv1 .. layer4
        expected_logits = model(images)
    assert mapper.target_name == "layer4" and mapper.classifier is model.fc
    assert cams.shape == (3, 6, 3, 3)
    torch.testing.assert_close(cams, _hand_cams(features, model.fc.weight), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, expected_logits)
    after = _snapshot(model)
    assert after["hooks"] == before["hooks"], "hooks left on the model"
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert not model.training


def test_bias_makes_the_spatial_mean_equal_the_logits_and_classes_select_maps() -> None:
    model = _resnet18()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, cams = ClassActivationMapper(model, bias=True).forward(images)
        torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)
        plain = class_activation_maps(model, images)
        torch.testing.assert_close(plain + model.fc.bias.view(1, -1, 1, 1), cams)
        labels = torch.tensor([5, 0, 3, 3])
        picked = class_activation_maps(model, images, labels, target_layer="layer4", classifier="fc")
        torch.testing.assert_close(picked, lowcam.select_class_map(plain, labels))
        predicted = class_activation_maps(model, images, "predicted")
        torch.testing.assert_close(predicted, lowcam.select_class_map(plain, logits.argmax(1)))


def test_target_layer_given_by_module_and_a_shallower_layer() -> None:
    """A layer given by the user is used as it is (here one whose channels fit the head: layer4's first
    block)."""
    model = _resnet18()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cams = class_activation_maps(model, images, target_layer=model.layer4[0])
        x = nn.Sequential(*list(model.children())[:-3])(images)
        features = model.layer4[0](x)
    torch.testing.assert_close(cams, _hand_cams(features, model.fc.weight), rtol=1e-5, atol=1e-5)


def test_gradients_flow_when_grad_is_enabled() -> None:
    model = _resnet18()
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    maps = class_activation_maps(model, images, torch.tensor([1, 2]))
    maps.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_timm_resnet_equals_forward_features_at_the_head() -> None:
    timm = pytest.importorskip("timm", reason="timm is not installed")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=5).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    mapper = ClassActivationMapper(model)
    with torch.no_grad():
        logits, cams = mapper.forward(images)
        features = model.forward_features(images)
    assert mapper.classifier is model.get_classifier()
    torch.testing.assert_close(
        cams, _hand_cams(features, model.get_classifier().weight), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(logits, model(images))


def test_a_head_that_is_not_gap_and_linear_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))  # flatten → linear
    with pytest.raises(ValueError, match=r"no layer of the model outputs \(B, 144, h, w\).*target_layer="):
        class_activation_maps(model, torch.rand(1, 3, 8, 8))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_bad_arguments_are_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="target_layer 'layer9' is not a sub-module"):
        ClassActivationMapper(model, "layer9")
    with pytest.raises(TypeError, match="classifier must be an nn.Linear"):
        ClassActivationMapper(model, classifier="0")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ClassActivationMapper("resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no nn.Linear classifier"):
        ClassActivationMapper(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="target_layer is not a sub-module"):
        ClassActivationMapper(model, nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="classes must be None, a"):
        ClassActivationMapper(model)(torch.rand(1, 3, 8, 8), "label")  # type: ignore[arg-type]


def test_torchcam_cam_extractor_gives_the_same_maps() -> None:
    torchcam = pytest.importorskip("torchcam.methods", reason="torchcam is not installed")
    model = _resnet18()
    images = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    labels = [4, 1, 1]
    with torch.no_grad():
        ours = class_activation_maps(model, images, torch.tensor(labels))
    extractor = torchcam.CAM(model, target_layer="layer4", fc_layer="fc", input_shape=(3, 96, 96))
    try:
        with torch.no_grad():
            scores = model(images)
        (theirs,) = extractor(class_idx=labels, scores=scores, normalized=False)
    finally:
        extractor.remove_hooks()
    torch.testing.assert_close(ours[:, 0], theirs, rtol=1e-5, atol=1e-5)
    # their maps go straight into the "wsoleval" preparation and the metric, with the same counts
    gt = [torch.tensor([[10, 20, 60, 90]])] * 3
    ours_acc = BoxAccuracy("maxboxacc").update(prepare_scoremap(ours, size=96), gt).compute()
    theirs_acc = BoxAccuracy("maxboxacc").update(prepare_scoremap(theirs, size=96), gt).compute()
    assert torch.equal(ours_acc.counts[0.5], theirs_acc.counts[0.5])


def test_pytorch_grad_cam_gradcam_on_a_gap_network_is_the_relu_of_cam_and_feeds_the_metrics() -> None:
    """On GAP + linear, Grad-CAM's channel weights are W[c] / (h·w): its map is CAM's, ReLU'd, min–max
    scaled and resized bilinearly by OpenCV (pytorch-grad-cam's scale_cam_image, applied twice)."""
    gradcam = pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    targets_mod = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    cv2 = pytest.importorskip("cv2", reason="opencv is not installed")
    model = _resnet18()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    labels = [2, 5]
    with torch.no_grad():
        ours = class_activation_maps(model, images, torch.tensor(labels))[:, 0].numpy()
    with gradcam.GradCAM(model=model, target_layers=[model.layer4]) as cam:
        theirs = cam(input_tensor=images, targets=[targets_mod.ClassifierOutputTarget(c) for c in labels])
    assert theirs.shape == (2, 64, 64)

    def scale(m: np.ndarray) -> np.ndarray:
        m = m - m.min()
        return m / (1e-7 + m.max())

    expected = np.stack([scale(cv2.resize(np.float32(scale(np.maximum(m, 0))), (64, 64))) for m in ours])
    np.testing.assert_allclose(theirs, expected, atol=1e-4)
    maps = prepare_scoremap(torch.from_numpy(theirs), size=64)
    gt = [torch.tensor([[5, 5, 40, 50]]), torch.tensor([[20, 10, 63, 63]])]
    result = BoxAccuracy("maxboxacc_v2").update(maps, gt).compute()
    assert result.n == 2 and 0.0 <= result.value <= 100.0
    model.zero_grad(set_to_none=True)
