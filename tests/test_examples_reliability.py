"""Fast checks of the pipeline's guards (``examples/ornet``): config validation before training, device
and weight errors, checkpoint and output-file failures, and the reference-faithful switches.

The end-to-end runs are in ``test_examples_pipeline.py``.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import synthetic
from ornet import checkpoint, files, recipe
from ornet.checks import config_changes, validate
from ornet.config import Config, ConfigError, load_config, to_dict
from ornet.distributed import parse_device, setup
from ornet.models import build_classifier
from ornet.report import format_table
from ornet.runtime import set_determinism

# ------------------------------------------------------------------------------------ config (item 10)


def test_whole_config_is_validated_with_every_problem_listed() -> None:
    found: list[str] = []
    cfg = load_config(
        None,
        {"fine.area.topk": "10", "fine.erasing.erase_prob": "2.0", "quirks.upsample": "linear"},
        problems=found,
    )
    with pytest.raises(ConfigError) as caught:
        validate(cfg, num_classes=3, found=found)
    message = str(caught.value)
    assert "fine.area.topk: got 10, expected in [0, 3] (the number of classes)" in message
    assert "fine.erasing: erase_prob must be in [0, 1], got 2.0" in message
    assert "quirks.upsample: upsample must be one of" in message and "got 'linear'" in message
    with pytest.raises(ConfigError, match=r"invalid configuration:\n  fine.erasing: erase_prob must be in"):
        load_config(None, {"fine.erasing.erase_prob": "2.0"})  # without a problems list: raised at once
    validate(load_config(None, {"fine.area.topk": "3", "fine.area.skip": "1"}), num_classes=3)


def test_more_classes_than_the_reference_stage1_head_are_refused_under_reinit_layer4() -> None:
    pretrained = {"model.backbone_weights": "IMAGENET1K_V1"}
    with pytest.raises(ConfigError, match=r"quirks.reinit_layer4: got True, expected false for 1500 classes"):
        validate(load_config(None, pretrained), num_classes=1500)
    validate(load_config(None, {**pretrained, "quirks.reinit_layer4": "false"}), num_classes=1500)
    validate(load_config(None, pretrained), num_classes=1000)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        (
            "runtime.backend",
            "cuda",
            "runtime.backend: backend must be one of ('auto', 'torch', 'triton'), got 'cuda'",
        ),
        ("evaluator.select", "best", "evaluator.select: got 'best'"),
        ("fine.optim.name", "adamw", "fine.optim.name: got 'adamw'"),
        ("coarse.optim.lr", "0", "coarse.optim.lr: got 0.0"),
        ("fine.entropy.sigma", "0", "fine.entropy: sigma must be > 0, got 0.0"),
        ("data.crop", "300", "data.resize: got 256, expected at least data.crop (300)"),
        ("runtime.device", "gpu", "runtime.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("cam.output_stride", "2", "cam.output_stride: got 2, expected one of 4, 8, 16, 32 or null"),
        ("cam.extra_output_strides", "[32, 7]", "cam.extra_output_strides: got [32, 7], expected distinct"),
        ("cam.extra_output_strides", "[32, 32]", "cam.extra_output_strides: got [32, 32], expected distinct"),
        ("eval.scoremap_source", "cam_s32", "eval.scoremap_source: got 'cam_s32'"),
        ("data.score_size", "1", "data.score_size: got 1, expected at least 2"),
        ("model.backbone", "resnet_51", "model.backbone: got 'resnet_51', expected a torchvision classifier"),
        ("model.evaluator", "vgg_16", "model.evaluator: got 'vgg_16', expected a torchvision classifier"),
    ],
)
def test_invalid_values_are_named(key: str, value: str, fragment: str) -> None:
    found: list[str] = []
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        validate(load_config(None, {key: value}, problems=found), num_classes=200, found=found)
    assert fragment in str(caught.value)


def test_device_names() -> None:
    assert parse_device("auto") == ("auto", None) and parse_device("cuda:1") == ("cuda", 1)
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "mps"):
        with pytest.raises(ValueError, match="runtime.device"):
            parse_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            setup("cuda")
    assert setup("cpu").device == torch.device("cpu")


def test_resume_compares_the_sections_a_stage_depends_on() -> None:
    saved = to_dict(Config())
    changed = load_config(None, {"coarse.epochs": "6", "fine.optim.lr": "0.5", "runtime.progress": "false"})
    assert config_changes("coarse", saved, changed) == ["coarse.epochs: 70 → 6"]
    assert config_changes("fine", saved, changed) == ["coarse.epochs: 70 → 6", "fine.optim.lr: 0.0001 → 0.5"]
    assert config_changes("evaluator", saved, changed) == []
    strided = load_config(None, {"cam.output_stride": "8", "cam.extra_output_strides": "[32]"})
    assert config_changes("cam", saved, strided) == ["cam.output_stride: None → 8"]
    assert config_changes("cam_s32", saved, strided) == []  # its stride is in its name
    assert config_changes("cam_s32", saved, changed) == []
    assert config_changes("cam_s32", saved, load_config(None, {"cam.epochs": "3"})) == ["cam.epochs: 30 → 3"]
    assert config_changes("coarse", saved, load_config(None, {"data.num_workers": "0"})) == []  # run-only
    assert config_changes("coarse", saved, load_config(None, {"fine.area.topk": "5"})) == []
    assert config_changes("fine", saved, load_config(None, {"fine.area.topk": "5"})) == [
        "fine.area.topk: 25 → 5"
    ]


# ----------------------------------------------------------------------------------- components


def test_every_component_gets_the_config_backend_and_its_section() -> None:
    cfg = load_config(
        None,
        {
            "runtime.backend": "torch",
            "fine.erasing.erase_prob": "0.25",
            "fine.erasing.per_sample_factor": "true",
            "fine.area.topk": "7",
            "fine.entropy.beta": "0.1",
            "fine.entropy.detach_weight": "true",
        },
    )
    parts = recipe.fine_parts(cfg)
    assert {parts.erasing.backend, parts.area.backend, parts.entropy.backend} == {"torch"}
    assert (
        parts.area.params.topk == 7
        and parts.entropy.params.beta == 0.1
        and parts.entropy.params.detach_weight
    )
    assert parts.erasing.params is cfg.fine.erasing  # the config section is the component's params
    described = repr(parts.erasing)  # the erase probability's argument is renamed in lowcam 0.2
    assert "per_sample_factor=True" in described and "=0.25, min_factor=0.0" in described
    evaluator = recipe.frozen_evaluator(torch.nn.Linear(2, 2), cfg)
    assert evaluator.upsample == "nearest" and evaluator.follow_parent_mode is True


def test_deterministic_flags() -> None:
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        set_determinism(True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        set_determinism(False)
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def test_reinit_layer4_quirk_applies_only_off_200_classes(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(0)
    for classes, reinit, fresh in ((5, True, True), (5, False, False), (200, True, False)):
        cfg = load_config(
            None, {"model.backbone": "resnet18", "model.base_width": "4", "quirks.reinit_layer4": str(reinit)}
        )
        net = recipe.coarse_net(cfg, classes, str(path))
        layer4 = net.body[3]
        same = torch.equal(layer4[0].conv1.weight, source.layer4[0].conv1.weight)
        assert same != fresh, (classes, reinit)
        assert torch.equal(net.stem[0].weight, source.conv1.weight)  # the stem is always pretrained
        # the reference's fresh head is torchvision's default (1000-way) off 200 classes
        assert net.body[-1].out_features == (1000 if fresh else classes), (classes, reinit)
    # stage 1's loss reads the labels 0 … 4 off the 1000 logits, as the reference does
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 4])
    cfg = load_config(None, {"model.backbone": "resnet18", "model.base_width": "4"})
    assert cfg.quirks.reinit_layer4  # the reference's default
    net = recipe.coarse_net(cfg, 5, str(path))
    out = net(images)
    assert out.logits.shape == (2, 1000) and out.generator.logits.shape == (2, 5)
    assert torch.isfinite(recipe.coarse_loss(net, images, labels)["loss"])


def test_weights_of_another_architecture_are_refused_with_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="does not fit a resnet18") as caught:
        build_classifier("resnet18", 4, str(path))
    message = str(caught.value)
    assert "unexpected (" in message and "mismatched (" in message and "layer1.0.conv1.weight" in message


# -------------------------------------------------------------------------- checkpoints and files


def test_empty_and_corrupted_checkpoints_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "coarse.pt"
    empty.touch()
    with pytest.raises(checkpoint.CheckpointError, match=r"coarse\.pt: the checkpoint is empty"):
        checkpoint.load(empty)
    good = tmp_path / "good.pt"
    checkpoint.atomic_save({"model": {"w": torch.ones(100)}}, good)
    for name, data in (("garbage.pt", b"not a checkpoint at all"), ("cut.pt", good.read_bytes()[:300])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(checkpoint.CheckpointError, match=name) as caught:
            checkpoint.load(tmp_path / name)
        assert "weights_only=False" not in str(caught.value) and "truncated" in str(caught.value)


def test_full_disk_during_save_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fine.pt"
    checkpoint.atomic_save({"epoch": 1}, path)

    def full(obj: object, handle: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(files.WriteError, match=f"could not write {path}"):
        checkpoint.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.pt"]


def test_atomic_text_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    files.atomic_write_text(path, "old\n")

    def fail(handle: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.WriteError, match="metrics.json"):
        files.atomic_write(path, fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    (tmp_path / ".fine.pt.x1y2.tmp").write_bytes(b"part")
    assert [p.name for p in files.remove_temporaries(tmp_path)] == [".fine.pt.x1y2.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ---------------------------------------------------------------------------------- small pieces


def test_table_of_a_result_without_top1_does_not_crash() -> None:
    missing = {"gt_known": 50.0, "top1_loc": None, "top5_loc": None}
    result = {"ornet": missing, "maxboxacc": {"value": 1.0}, "maxboxacc_v2": {"value": 2.0}}
    assert "nan" in format_table({"fine": {**result, "classification_top1": 0.0}})


def test_table_rows_name_each_map_and_its_resolution() -> None:
    result = {
        "ornet": {"gt_known": 50.0, "top1_loc": 40.0, "top5_loc": 50.0},
        "maxboxacc": {"value": 1.0},
        "maxboxacc_v2": {"value": 2.0},
        "classification_top1": 0.0,
    }
    table = format_table(
        {
            "coarse": {**result, "map_size": [16, 16]},
            "fine": {**result, "map_size": [16, 16]},
            "cam": {**result, "map_size": [16, 16], "output_stride": 4},
            "cam_s32": {**result, "map_size": [2, 2], "output_stride": 32},
        }
    )
    rows = [line.split(" | ")[0].strip() for line in table.splitlines()[2:]]
    assert rows == [
        "stage 1 map (coarse, 16×16)",
        "stage 2 map (ORNet, 16×16)",
        "CAM baseline (stride 4, 16×16)",
        "CAM baseline (stride 32, 2×2)",
    ]


def test_pictures_draw_the_library_box_at_tau_with_plot_localization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from ornet import report
    from PIL import Image

    from lowcam import metrics
    from lowcam.metrics import picture

    calls: list[dict[str, object]] = []
    plot = metrics.plot_localization

    def recording(image: object, scoremap: object = None, **kwargs: object) -> object:
        calls.append({"image": image, "scoremap": scoremap, **kwargs})
        return plot(image, scoremap, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(picture, "plot_localization", recording)  # what plot_localization_grid draws with
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=generator)
    maps = {name: torch.rand(3, 1, 8, 8, generator=generator) for name in ("coarse", "fine")}
    gt = [torch.tensor([[2.0, 3.0, 20.0, 25.0]]), torch.tensor([[0.0, 0.0, 31.0, 31.0]]), torch.zeros(0, 4)]
    results = {
        name: {"ornet": {"threshold": {"0.5": tau}, "gt_known": 50.0}}
        for name, tau in (("coarse", 0.3), ("fine", 0.6))
    }
    data = SimpleNamespace(crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    ctx = SimpleNamespace(cfg=SimpleNamespace(data=data), out=tmp_path)
    report.draw(ctx, results, {n: list(m) for n, m in maps.items()}, images, gt)  # type: ignore[arg-type]
    for name in ("maps_coarse.png", "maps_fine.png", "maps.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and min(picture.size) > 100
    assert not list(tmp_path.glob(".*.tmp"))
    # maps_<name>.png: 3 panels each; maps.png: 3 rows of (image, coarse, fine)
    assert len(calls) == 3 + 3 + 3 * 3
    for name, tau, grid in (("coarse", 0.3, calls[0:3]), ("fine", 0.6, calls[3:6])):
        expected = metrics.box_from_map(maps[name], tau, protocol="ornet", image_size=32)
        for k, call in enumerate(grid):
            assert torch.equal(call["pred_box"], expected[k])  # type: ignore[arg-type]
            assert torch.equal(call["scoremap"], maps[name][k, 0])  # type: ignore[arg-type]
            assert torch.equal(call["gt_boxes"], gt[k])  # type: ignore[arg-type]
            assert torch.allclose(call["image"], (images[k] * 0.25 + 0.5).clamp(0, 1))  # type: ignore[arg-type]
    row = calls[6:9]  # the first image: itself (no map, no box), then each map with its box
    assert row[0]["scoremap"] is None and row[0]["pred_box"] is None
    first = metrics.box_from_map(maps["fine"][0, 0], 0.6, protocol="ornet", image_size=32)  # one (h, w) map
    assert torch.equal(row[2]["pred_box"], first)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["--train-per-class", "--test-per-class", "--classes"])
def test_synthetic_rejects_impossible_counts(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        synthetic.main(["--out", str(tmp_path), flag, "-1"])
    assert caught.value.code == 2 and "expected an integer >= 1, got -1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_later_stages_load_the_selected_evaluator_epoch(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ornet.training import load_model

    last, chosen = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    payload = {"model": last.state_dict(), "complete": True, "epoch": 2}
    checkpoint.atomic_save(
        {**payload, "selected_model": chosen.state_dict(), "selected_epoch": 1}, tmp_path / "evaluator.pt"
    )
    loaded = load_model(SimpleNamespace(out=tmp_path), "evaluator", torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    assert torch.equal(loaded.weight, chosen.weight)
    checkpoint.atomic_save(payload, tmp_path / "evaluator.pt")  # e.g. an imported checkpoint: "model" only
    loaded = load_model(SimpleNamespace(out=tmp_path), "evaluator", torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    assert torch.equal(loaded.weight, last.weight)
    with pytest.raises(checkpoint.CheckpointError, match=r"mismatched \(2\): bias \(2,\) vs \(3,\)"):
        load_model(SimpleNamespace(out=tmp_path), "evaluator", torch.nn.Linear(2, 3))  # type: ignore[arg-type]
