"""``lowcam.split_backbone``: torchvision ResNets and timm classifiers cut at their low-level feature, checked
against the real packages (random weights: nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowcam
from lowcam import CamNet, split_backbone

torchvision = pytest.importorskip("torchvision", reason="torchvision (extra 'test') is not installed")


def _logits(parts: lowcam.BackboneSplit, x: torch.Tensor) -> torch.Tensor:
    return parts.classifier(parts.features(parts.stem(x)).mean(dim=(2, 3)))


def test_resnet_is_cut_after_its_max_pooling_and_reproduces_the_model() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    parts = split_backbone(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert parts.stem_channels == 64 and parts.stem(x).shape == (2, 64, 8, 8)
        assert torch.allclose(parts.body()(parts.stem(x)), model(x), atol=1e-6)
        assert torch.allclose(_logits(parts, x), model(x), atol=1e-6)
    assert (parts.stem_stride, parts.num_features, parts.output_stride) == (4, 512, 32)
    assert parts.stem[0] is model.conv1 and parts.classifier is model.fc  # shared, not copied
    body_keys = [k.split(".")[0] for k in parts.body().state_dict()]
    assert sorted(set(body_keys)) == ["0", "1", "2", "3", "6"]  # layer1..4, pool, flatten, fc: body.6 = fc


def test_the_check_leaves_mode_weights_and_random_state_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=3).train()
    model.bn1.eval()  # a frozen BatchNorm in a training model keeps its own mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()

    def no_global_seed(seed: int) -> None:
        raise AssertionError("the check must not seed the global generators (every device's)")

    monkeypatch.setattr(torch, "manual_seed", no_global_seed)
    split_backbone(model)
    assert model.training and not model.bn1.training and model.layer1.training
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics too
    model.eval().layer1.train()
    split_backbone(model)
    assert not model.training and model.layer1.training and not model.layer2.training


def test_a_resnet_whose_forward_differs_is_refused() -> None:
    class Doubled(torchvision.models.ResNet):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = Doubled(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=3)
    with pytest.raises(ValueError, match="not a linear layer on the average-pooled feature"):
        split_backbone(model)
    assert split_backbone(model, check=False).output_stride is None


def test_bad_models_and_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"Sequential is not a torchvision ResNet \(missing \['conv1'"):
        split_backbone(nn.Sequential(nn.Conv2d(3, 4, 3)))
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(ValueError, match="low_level_stride=8: a ResNet's stem ends at stride 4"):
        split_backbone(model, low_level_stride=8)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="low_level_stride must be a positive int"):
            split_backbone(model, low_level_stride=bad)  # type: ignore[arg-type]
    for bad_side in (-1, 0, 48, True):
        with pytest.raises(ValueError, match="check_side must be a positive multiple of 32"):
            split_backbone(model, check_side=bad_side)
    with pytest.raises(TypeError, match="model must be an nn.Module, got str"):
        split_backbone("resnet18")  # type: ignore[arg-type]


def test_generator_on_the_stem_trains_through_the_body() -> None:
    torch.manual_seed(0)
    parts = split_backbone(torchvision.models.resnet18(weights=None, num_classes=3))
    generator = lowcam.LowLevelActivationGenerator(parts.stem_channels, 3, base_width=4)
    body = parts.body()
    low = parts.stem(torch.randn(2, 3, 64, 64))
    out = generator(low)
    nn.functional.cross_entropy(body(low * out.activation), torch.tensor([0, 2])).backward()
    assert generator.map_head[0].weight.grad is not None and parts.classifier.weight.grad is not None


timm_cases = [("efficientnet_lite0", 24, 1280), ("resnet18", 64, 512), ("convnext_atto", 40, 320)]


@pytest.mark.parametrize(("name", "stem_channels", "features"), timm_cases)
def test_timm_split_is_at_stride_4_and_reproduces_the_model(
    name: str, stem_channels: int, features: int
) -> None:
    timm = pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=3).eval()
    if name == "convnext_atto":  # LayerNorm on the pooled feature: no exact CAM
        with pytest.raises(ValueError, match="not a linear layer on the average-pooled feature"):
            split_backbone(model)
        return
    parts = split_backbone(model)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        low = parts.stem(x)
        assert low.shape == (1, stem_channels, 24, 24)
        assert parts.features(low).shape == (1, features, 3, 3)
        assert torch.allclose(_logits(parts, x), model(x), atol=1e-5)
        assert torch.allclose(parts.body()(low), model(x), atol=1e-5)
    assert (parts.stem_channels, parts.num_features, parts.output_stride) == (stem_channels, features, 32)
    with pytest.raises(ValueError, match="low_level_stride=64: no feature_info entry"):
        split_backbone(model, low_level_stride=64)


def test_timm_head_after_a_pooled_convolution_is_refused() -> None:
    timm = pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")
    model = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=3)  # conv_head after GAP
    with pytest.raises(ValueError, match="head is not a linear layer on the average-pooled feature"):
        split_backbone(model)


def test_timm_stride_is_measured_and_the_meta_device_is_not_checked() -> None:
    timm = pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")
    dilated = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3, output_stride=8)
    assert split_backbone(dilated).output_stride == 8
    with torch.device("meta"):
        model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3)
    parts = split_backbone(model)  # no check on the meta device
    assert parts.output_stride is None and parts.num_features == 1280


# ------------------------------------------------------------------------------------------- CamNet


def test_cam_net_maps_average_to_logits() -> None:
    torch.manual_seed(0)
    net = CamNet(torchvision.models.resnet18(num_classes=3)).eval()
    logits, cams = net.forward_maps(torch.randn(2, 3, 64, 64))
    assert cams.shape == (2, 3, 2, 2)
    assert torch.allclose(cams.mean(dim=(2, 3)) + net.fc.bias, logits, atol=1e-5)


@pytest.mark.parametrize(("output_stride", "side"), [(32, 2), (16, 4), (8, 8), (4, 16)])
def test_cam_net_output_stride_sets_the_map_side(output_stride: int, side: int) -> None:
    torch.manual_seed(0)
    net = CamNet(torchvision.models.resnet18(num_classes=3), output_stride=output_stride).eval()
    x = torch.randn(2, 3, 64, 64)
    logits, cams = net.forward_maps(x)
    assert cams.shape == (2, 3, side, side) and net.output_stride == output_stride
    # the CAM is still Σ_k fc.weight[c, k] · feature[k] on the last feature, whose mean gives the logits
    feature = net.features(x)
    reference = (net.fc.weight[None, :, :, None, None] * feature[:, None]).sum(dim=2)
    assert torch.allclose(cams, reference, atol=1e-4)
    assert torch.allclose(cams.mean(dim=(2, 3)) + net.fc.bias, logits, atol=1e-5)
    # no dilation anywhere: only strides change
    assert all(m.dilation == (1, 1) for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_cam_net_map_is_the_fc_weighted_feature_sum() -> None:
    torch.manual_seed(0)
    net = CamNet(torchvision.models.resnet50(num_classes=3), output_stride=8).eval()
    x = torch.randn(1, 3, 64, 64)
    feature = net.features(x)
    _, cams = net.forward_maps(x)
    reference = (net.fc.weight[None, :, :, None, None] * feature[:, None]).sum(dim=2)
    assert cams.shape == (1, 3, 8, 8) and torch.allclose(cams, reference, atol=1e-4)
    # Bottleneck: the strided conv2 and the downsample conv of layer3[0] and layer4[0] have stride 1
    for layer in ("layer3", "layer4"):
        block = dict(net.features.named_children())[{"layer3": "6", "layer4": "7"}[layer]][0]
        assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)


def test_cam_net_refuses_a_modified_resnet_and_a_bad_class_count() -> None:
    dilated = torchvision.models.resnet50(num_classes=3, replace_stride_with_dilation=[False, True, True])
    with pytest.raises(ValueError, match="the ResNet's feature is at stride 8, not 32"):
        CamNet(dilated, 3, output_stride=32)
    resnet = torchvision.models.resnet18(num_classes=3)
    CamNet(resnet, output_stride=8)
    with pytest.raises(ValueError, match="feature is at stride 8, not 32"):
        CamNet(resnet, output_stride=8)  # already a CamNet's: its strides were changed
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_classes must be a positive int or None"):
            CamNet(torchvision.models.resnet18(num_classes=3), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [2, 64, 0, True, "8"])
def test_bad_output_stride_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=r"output_stride must be one of 4, 8, 16, 32; got") as caught:
        CamNet(torchvision.models.resnet18(num_classes=3), output_stride=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(caught.value)
