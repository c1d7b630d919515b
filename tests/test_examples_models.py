"""Model assembly, pretrained weights (never downloaded), configuration and checkpoints of ``examples/ornet``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import lowcam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from ornet import checkpoint, recipe
from ornet.config import (
    Config,
    ConfigError,
    add_override_arguments,
    from_dict,
    load_config,
    overrides_from,
    to_dict,
)
from ornet.models import (
    CoarseNet,
    FineNet,
    build_classifier,
    load_pretrained,
    map_sides,
    matching_output_stride,
)

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


def test_stage_networks() -> None:  # the cut itself: tests/test_backbones.py
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    coarse = CoarseNet(build_classifier("resnet18", 4), 4, base_width=4)
    out = coarse(x)
    assert out.generator.activation.shape == (2, 1, 8, 8) and out.logits.shape == (2, 4)
    fine = FineNet(coarse)
    trainable = recipe.freeze_for_fine(fine)
    names = {n for n, p in fine.named_parameters() if p.requires_grad}
    assert names and all(n.split(".")[1] in recipe.FINE_TRAINABLE for n in names)
    assert {id(p) for p in trainable} == {id(p) for p in fine.parameters() if p.requires_grad}
    assert fine.stem in recipe.fine_frozen_modules(fine)


def test_recalibrate_batchnorm_averages_batch_statistics_of_the_trained_generator_layers() -> None:
    """PreciseBN: each generator BatchNorm in training mode ends with the mean over the batches of its
    input's batch mean and unbiased variance; frozen (eval-mode) layers, the backbone's BatchNorm, the
    modes and the momenta are left as they were."""
    torch.manual_seed(0)
    coarse = CoarseNet(build_classifier("resnet18", 4), 4, base_width=4)
    coarse.train()
    for _ in range(2):  # running statistics away from their initial values
        coarse(torch.randn(3, 3, 32, 32))
    fine = FineNet(coarse)
    recipe.freeze_for_fine(fine)
    for module in recipe.fine_frozen_modules(fine):
        module.eval()  # stage 2 without quirks.follow_parent_mode
    bns = [m for m in fine.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    trained = [m for m in bns if m.training]
    assert 0 < len(trained) < len(bns)
    before = {name: b.clone() for name, b in coarse.state_dict().items() if "running" in name}
    momenta = [m.momentum for m in trained]  # 0.01 in the blocks, torch's 0.1 in the map head
    seen: dict[torch.nn.Module, list[torch.Tensor]] = {m: [] for m in trained}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach())) for m in trained]
    batches = [torch.randn(3, 3, 32, 32), torch.randn(5, 3, 32, 32)]
    steps = [m.num_batches_tracked.clone() for m in trained]
    layers, count = recipe.recalibrate_batchnorm(fine, batches)
    assert layers == trained and count == 2
    assert all(torch.equal(m.num_batches_tracked, s) for m, s in zip(trained, steps))  # step counts kept
    for hook in hooks:
        hook.remove()
    for m in trained:
        means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen[m]])
        variances = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in seen[m]])
        torch.testing.assert_close(m.running_mean, means.mean(0))
        torch.testing.assert_close(m.running_var, variances.mean(0))
        assert m.training
    assert [m.momentum for m in trained] == momenta and 0.01 in momenta
    trained_names = {n for n, m in coarse.named_modules() if m in trained}
    for name, value in coarse.state_dict().items():
        if "running" in name and name.rsplit(".", 1)[0] not in trained_names:
            assert torch.equal(value, before[name]), name  # frozen generator layers and the backbone
    assert fine.stem.training is False and fine.generator.up3.training is True
    kept = {name: b.clone() for name, b in coarse.state_dict().items()}
    with pytest.raises(ValueError, match="batches is empty"):
        recipe.recalibrate_batchnorm(fine, [])
    assert all(torch.equal(b, kept[name]) for name, b in coarse.state_dict().items())  # left as they were
    assert [m.momentum for m in trained] == momenta and fine.generator.up3.training is True


def test_stride_32_weights_load_into_a_stride_4_cam(tmp_path: Path) -> None:
    torch.manual_seed(0)
    coarse = lowcam.CamNet(build_classifier("resnet18", 3)).eval()
    fine = lowcam.CamNet(build_classifier("resnet18", 3), output_stride=4).eval()
    fine.load_state_dict(coarse.state_dict())  # strict: every name and shape is the same
    assert all(torch.equal(a, b) for a, b in zip(coarse.state_dict().values(), fine.state_dict().values()))
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=1000).state_dict(), path)
    loaded = lowcam.CamNet(
        build_classifier("resnet18", 3, str(path)), output_stride=4
    )  # a local weights file loads at stride 4
    assert loaded.fc.out_features == 3
    x = torch.randn(1, 3, 64, 64)
    assert coarse.forward_maps(x)[1].shape[-1] == 2 and fine.forward_maps(x)[1].shape[-1] == 16


def test_matching_output_stride_follows_the_generator_map() -> None:
    state = torch.get_rng_state()
    assert map_sides("resnet18", 4, 16, 64) == (16, {4: 16, 8: 8, 16: 4, 32: 2})
    assert matching_output_stride("resnet18", 4, 16, 64) == 4
    assert matching_output_stride("resnet50", 200, 64, 224) == 4  # 56×56 maps
    assert torch.equal(torch.get_rng_state(), state)  # measured on the meta device: no random draws


def test_configs_load_and_every_value_overrides() -> None:
    cub = load_config(CONFIGS / "cub.yaml")
    assert (cub.fine.seed, cub.evaluator.seed, cub.quirks.upsample, cub.quirks.follow_parent_mode) == (
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
    assert synthetic.cam.output_stride is None and synthetic.cam.extra_output_strides == []
    assert cub.cam.output_stride is None and imagenet.cam.output_stride is None
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
            "--cam.output_stride",
            "8",
            "--cam.extra_output_strides",
            "[32, 16]",
        ]
    )
    config = load_config(CONFIGS / "cub.yaml", overrides_from(args))
    assert config.fine.optim.lr == 3e-4 and config.model.backbone_weights is None
    assert config.data.mean == [0.5, 0.5, 0.5] and config.fine.seed == 1 and config.fine.area.topk == 7
    assert config.cam.output_stride == 8 and config.cam.extra_output_strides == [32, 16]
    assert config.coarse.optim.lr == 1e-3  # one optimiser section per stage, not shared state
    assert {a.dest for a in parser._actions} >= {"override:quirks.upsample", "override:runtime.compile"}
    with pytest.raises(ConfigError, match="unknown config key 'fine.lrr'"):
        load_config(None, {"fine.lrr": "1"})
    with pytest.raises(ConfigError, match="unknown config key 'model.generator_width'"):
        load_config(None, {"model.generator_width": "1"})  # named as the component's argument: base_width
    with pytest.raises(ConfigError, match="fine.epochs: expected int"):
        load_config(None, {"fine.epochs": "many"})
    assert isinstance(load_config(None), Config)


def test_saved_config_reads_back() -> None:
    config = load_config(
        None, {"fine.optim.lr": "0.5", "fine.area.topk": "4", "fine.erasing.erase_prob": "0.25"}
    )
    assert from_dict(to_dict(config)) == config
    assert isinstance(from_dict(to_dict(config)).fine.erasing, lowcam.ErasingParams)
    with pytest.raises(ConfigError, match="unknown config key 'seed'"):
        from_dict({"seed": 517})


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
