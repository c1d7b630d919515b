"""timm backbones in ``examples/train_ornet.py``: the stage networks, the CAM strides, the checks, the
stage-1 loss weights, the learning log and a tiny end-to-end run (random weights: nothing downloaded)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import lowcam

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

timm = pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")

import train_ornet  # noqa: E402
from ornet import recipe  # noqa: E402
from ornet.checks import validate  # noqa: E402
from ornet.config import CoarseLossWeights, Config, ConfigError, load_config  # noqa: E402
from ornet.models import (  # noqa: E402
    CoarseNet,
    build_classifier,
    is_torchvision,
    map_sides,
    matching_output_stride,
    output_strides,
)

LITE = "efficientnet_lite0"


def test_torchvision_and_timm_names() -> None:
    assert is_torchvision("resnet18") and is_torchvision("vgg16")
    assert not is_torchvision(LITE)
    assert output_strides("resnet18") == (4, 8, 16, 32) and output_strides(LITE) == (8, 16, 32)
    with pytest.raises(
        ValueError, match="'no_such_net' is neither a torchvision classifier nor a timm model"
    ):
        build_classifier("no_such_net", 3)


def test_coarse_net_body_reproduces_the_timm_logits() -> None:
    torch.manual_seed(0)
    model = build_classifier(LITE, 5).eval()
    net = CoarseNet(model, 5, 4).eval()
    x = torch.randn(2, 3, 64, 64)
    low = net.stem(x)
    assert low.shape == (2, 24, 16, 16)  # stride 4
    torch.testing.assert_close(net.body(low), model(x), atol=1e-5, rtol=1e-4)


def test_coarse_net_on_timm_and_saved_head() -> None:
    net = CoarseNet(build_classifier(LITE, 3), 3, 4).eval()
    out = net(torch.randn(2, 3, 64, 64))
    assert out.generator.activation.shape == (2, 1, 16, 16) and out.logits.shape == (2, 3)
    state = net.state_dict()
    assert recipe.saved_coarse_head(state, 3) == 3
    # the head is the body's last matrix, wherever the body ends (body.9 here, body.6 for a ResNet)
    head_key = max(
        (k for k in state if k.startswith("body.") and state[k].dim() == 2),
        key=lambda k: int(k.split(".")[1]),
    )
    big = dict(state)
    big[head_key] = torch.zeros(1000, state[head_key].shape[1])
    assert recipe.saved_coarse_head(big, 3) == recipe.REFERENCE_HEAD


def test_reinit_layer4_quirk_never_applies_to_timm() -> None:
    cfg = Config()
    cfg.model.backbone = LITE
    assert recipe.coarse_head(cfg, 4, "imagenet") == 4
    cfg.model.backbone = "resnet18"
    assert recipe.coarse_head(cfg, 4, "IMAGENET1K_V1") == recipe.REFERENCE_HEAD


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_cam_net_timm_strides(stride: int) -> None:
    cam = lowcam.CamNet(build_classifier(LITE, 3, output_stride=stride), output_stride=stride).eval()
    logits, maps = cam.forward_maps(torch.randn(1, 3, 64, 64))
    assert maps.shape == (1, 3, 64 // stride, 64 // stride)
    torch.testing.assert_close(maps.mean(dim=(2, 3)) + cam.fc.bias, logits, atol=1e-4, rtol=1e-4)


def test_cam_net_timm_stride_must_match_and_exist() -> None:
    with pytest.raises(
        ValueError, match="output_stride=16 but the timm model was created with output stride 32"
    ):
        lowcam.CamNet(build_classifier(LITE, 3), output_stride=16)
    with pytest.raises(ValueError, match="output_stride must be one of 8, 16, 32; got 4"):
        lowcam.CamNet(build_classifier(LITE, 3), output_stride=4)


def test_map_sides_and_matching_stride_for_timm() -> None:
    generator, sides = map_sides(LITE, 4, 8, 128)
    assert generator == 32 and sides == {8: 16, 16: 8, 32: 4}
    assert matching_output_stride(LITE, 4, 8, 128) == 8


def test_config_checks_timm_strides_and_coarse_weights() -> None:
    config = EXAMPLES / "configs" / "pretrained.yaml"
    validate(load_config(config), num_classes=4)  # the shipped config is valid
    with pytest.raises(ConfigError, match=r"cam.output_stride.*one of 8, 16, 32 or null"):
        validate(load_config(config, {"cam.output_stride": "4"}), num_classes=4)
    validate(load_config(config, {"model.backbone": "resnet18", "cam.output_stride": "4"}), num_classes=4)
    with pytest.raises(ConfigError, match="coarse.loss_weights.main"):
        validate(load_config(config, {"coarse.loss_weights.main": "-1"}), num_classes=4)
    zero = {"coarse.loss_weights.main": "0", "coarse.loss_weights.generator": "0"}
    with pytest.raises(ConfigError, match="not both 0"):
        validate(load_config(config, zero), num_classes=4)
    with pytest.raises(ValueError, match="output_stride must be one of 8, 16, 32 for a timm model; got 4"):
        build_classifier(LITE, 3, output_stride=4)


def test_coarse_loss_weights_and_logged_terms() -> None:
    torch.manual_seed(0)
    net = CoarseNet(build_classifier("resnet18", 3), 3, 4)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    torch.manual_seed(1)
    plain = recipe.coarse_loss(net, images, labels)
    torch.manual_seed(1)
    weighted = recipe.coarse_loss(net, images, labels, CoarseLossWeights(generator=0.5, main=0.1))
    torch.testing.assert_close(plain["loss"], plain["ce_generator"] + plain["ce_main"])
    torch.testing.assert_close(weighted["loss"], 0.5 * weighted["ce_generator"] + 0.1 * weighted["ce_main"])
    assert math.isclose(float(plain["ce_chance"]), math.log(3), rel_tol=1e-6)
    assert 0 <= float(plain["acc_generator"]) <= 1 and 0 < float(plain["map_mean"]) < 1


def test_map_statistics_by_hand() -> None:
    p = torch.tensor([0.0, 0.005, 0.5, 0.995, 1.0, 0.3]).view(1, 1, 2, 3)
    stats = recipe.map_statistics(p)
    assert math.isclose(float(stats["map_saturated"]), 4 / 6, rel_tol=1e-6)
    assert math.isclose(float(stats["map_mean"]), float(p.mean()), rel_tol=1e-6)


@pytest.mark.slow
def test_pipeline_end_to_end_with_timm(tmp_path: Path) -> None:
    data = tmp_path / "birds"
    lowcam.data.write_birds(
        data, lowcam.data.BirdSpec(classes=3, train_per_class=6, test_per_class=3, size=48, seed=3)
    )
    out = tmp_path / "run"
    args = [
        "--config", str(EXAMPLES / "configs" / "pretrained.yaml"),
        "--data.root", str(data), "--output_dir", str(out),
        "--model.backbone_weights", "null", "--model.evaluator_weights", "null", "--model.base_width", "4",
        "--data.resize", "36", "--data.crop", "32", "--data.score_size", "32",
        "--evaluator.epochs", "1", "--coarse.epochs", "1", "--fine.epochs", "1", "--cam.epochs", "1",
        "--evaluator.batch_size", "6", "--coarse.batch_size", "6", "--fine.batch_size", "6", "--cam.batch_size", "6",
        "--fine.area.topk", "3", "--eval.batch_size", "4", "--eval.pictures", "2",
        "--runtime.progress", "false", "--runtime.num_threads", "1", "--stage", "all",
    ]  # fmt: skip
    assert train_ornet.main(args) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert set(results) == {"coarse", "fine", "cam", "cam_s32", "center_gaussian"}
    assert results["cam"]["output_stride"] == 8 and results["cam"]["map_size"] == [4, 4]
    assert results["cam_s32"]["map_size"] == [1, 1] and results["fine"]["map_size"] == [8, 8]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    coarse = next(e for e in log if e["event"] == "coarse/epoch")
    assert math.isclose(coarse["ce_chance"], math.log(3), rel_tol=1e-6)
    assert {"ce_generator", "acc_generator", "map_mean", "map_saturated"} <= set(coarse)
    fine = next(e for e in log if e["event"] == "fine/epoch")
    assert 0 <= fine["erased_area"] <= fine["erasing_region"] <= 1 and "acc" in fine
    assert 0 <= fine["erased_mass"] <= fine["erasing_region_mass"] <= 1
