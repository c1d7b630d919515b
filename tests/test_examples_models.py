"""Model assembly, pretrained weights (never downloaded), configuration and checkpoints of ``examples/ornet``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from ornet import checkpoint
from ornet.config import (
    Config,
    ConfigError,
    add_override_arguments,
    from_dict,
    load_config,
    overrides_from,
    to_dict,
)
from ornet.models import CamNet, CoarseNet, FineNet, build_classifier, load_pretrained, split_resnet

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


def test_local_state_dict_loads_and_head_is_replaced(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_classifier("resnet18", 7, str(path))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.fc.out_features == 7  # the 1000-class head did not fit and was left initialised
    report = load_pretrained(torchvision.models.resnet18(weights=None, num_classes=7), "resnet18", str(path))
    assert report.skipped == ["fc.bias", "fc.weight"] and report.source == str(path)


def test_checkpoint_with_model_entry_is_accepted(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None, num_classes=3)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    model = build_classifier("resnet18", 3, str(path))
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_weight_enum_path_without_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None, num_classes=1000)
    calls: list[str] = []

    def fake_get_state_dict(self: torchvision.models.WeightsEnum, *args: object, **kwargs: object) -> dict:
        calls.append(self.name)
        return source.state_dict()

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = build_classifier("resnet18", 5, "IMAGENET1K_V1")
    assert calls == ["IMAGENET1K_V1"]
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 5
    with pytest.raises(ValueError, match="not a file nor one of ResNet18_Weights"):
        build_classifier("resnet18", 5, "IMAGENET9K_V9")
    with pytest.raises(FileNotFoundError):
        build_classifier("resnet18", 5, str(tmp_path / "missing.pth"))


def test_split_resnet_and_stage_networks() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    stem, body, channels = split_resnet(model)
    x = torch.randn(2, 3, 32, 32)
    assert channels == 64 and stem(x).shape == (2, 64, 8, 8)
    assert torch.allclose(body(stem(x)), model(x))
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        split_resnet(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))

    coarse = CoarseNet("resnet18", 4, generator_width=4)
    out = coarse(x)
    assert out.generator.activation.shape == (2, 1, 8, 8) and out.logits.shape == (2, 4)
    fine = FineNet.from_coarse(coarse)
    trainable = fine.freeze()
    names = {n for n, p in fine.named_parameters() if p.requires_grad}
    assert names and all(n.split(".")[1] in FineNet.TRAINABLE for n in names)
    assert {id(p) for p in trainable} == {id(p) for p in fine.parameters() if p.requires_grad}
    assert fine.stem in fine.frozen_modules()


def test_cam_net_maps_average_to_logits() -> None:
    torch.manual_seed(0)
    net = CamNet("resnet18", 3).eval()
    logits, cams = net(torch.randn(2, 3, 64, 64))
    assert cams.shape == (2, 3, 2, 2)
    assert torch.allclose(cams.mean(dim=(2, 3)) + net.fc.bias, logits, atol=1e-5)


def test_configs_load_and_every_value_overrides() -> None:
    cub = load_config(CONFIGS / "cub.yaml")
    assert (cub.fine.seed, cub.evaluator.seed, cub.quirks.upsample, cub.quirks.frozen_train_mode) == (
        517,
        1,
        "nearest",
        True,
    )
    f = cub.fine
    assert (f.optim.name, f.optim.lr, f.epochs, f.loss_weights.area, f.loss_weights.entropy) == (
        "adam",
        1e-4,
        30,
        0.02,
        1.5,
    )
    assert (f.area.topk, f.area.skip, f.entropy.sigma, f.erasing.erase_prob, f.erasing.max_factor) == (
        25,
        3,
        0.1,
        0.5,
        0.5,
    )
    assert (cub.evaluator.epochs, cub.evaluator.optim.lr, cub.model.evaluator) == (200, 1e-3, "vgg16")
    assert (cub.evaluator.select, cub.data.drop_last, cub.runtime.deterministic) == ("test_top1", False, True)
    imagenet = load_config(CONFIGS / "imagenet.yaml")
    assert imagenet.data.format == "imagenet" and imagenet.evaluator.epochs == 0
    assert imagenet.data.eval_split == "test" and imagenet.quirks.reinit_layer4
    synthetic = load_config(CONFIGS / "synthetic.yaml")
    assert synthetic.model.backbone_weights is None and synthetic.cam.enabled
    assert synthetic.evaluator.select == "holdout"

    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    args = parser.parse_args(
        [
            "--fine.optim.lr",
            "3e-4",
            "--fine.area.topk",
            "7",
            "--model.backbone_weights",
            "null",
            "--data.mean",
            "[0.5, 0.5, 0.5]",
            "--fine.seed",
            "1",
        ]
    )
    config = load_config(CONFIGS / "cub.yaml", overrides_from(args))
    assert config.fine.optim.lr == 3e-4 and config.model.backbone_weights is None
    assert config.data.mean == [0.5, 0.5, 0.5] and config.fine.seed == 1 and config.fine.area.topk == 7
    assert config.coarse.optim.lr == 1e-3  # one optimiser section per stage, not shared state
    assert {a.dest for a in parser._actions} >= {"override:quirks.upsample", "override:runtime.compile"}
    with pytest.raises(ConfigError, match="unknown config key 'fine.lrr'"):
        load_config(None, {"fine.lrr": "1"})
    with pytest.raises(ConfigError, match=r"'fine.area_topk' \(renamed: fine.area.topk\)"):
        load_config(None, {"fine.area_topk": "1"})
    with pytest.raises(ConfigError, match="fine.epochs: expected int"):
        load_config(None, {"fine.epochs": "many"})
    assert isinstance(load_config(None), Config)


def test_flat_config_of_older_checkpoints_reads_as_nested() -> None:
    old = {"seed": 517, "fine": {"lr": 0.5, "area_topk": 4, "erasing_p": 0.25}, "coarse": {"lr": 0.1}}
    config = from_dict(old)
    assert (config.fine.optim.lr, config.fine.area.topk, config.fine.erasing.erase_prob) == (0.5, 4, 0.25)
    assert config.coarse.optim.lr == 0.1 and config.fine.seed == 517
    assert from_dict(to_dict(config)) == config


def test_atomic_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    states = checkpoint.rng_states()
    expected = torch.rand(3)
    path = tmp_path / "sub" / "stage.pt"
    checkpoint.atomic_save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": [states]}, path
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["stage.pt"]  # no temporary file left behind
    loaded = checkpoint.load(path)  # torch.load(weights_only=True)
    checkpoint.set_rng_states(loaded["rng"][0])
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(loaded["model"]["weight"], model.weight)
    with pytest.raises(FileNotFoundError, match="run the previous stage first"):
        checkpoint.load(tmp_path / "nope.pt")


def test_docs_table_lists_every_config_key_with_its_default() -> None:
    import json
    import re

    from ornet.config import leaves

    page = (CONFIGS.parents[1] / "docs" / "pipeline.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_.0-9]+)` \| `([^`]*)` \|", page, flags=re.M))
    expected = {key: json.dumps(value) for key, (value, _hint) in leaves(Config()).items()}
    assert rows == expected
