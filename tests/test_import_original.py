"""``examples/import_original.py``: the authors' checkpoints (github.com/Sierkinhane/ORNet) into the pipeline.

The authors' networks are re-stated below from their ``models/model.py``, ``models/unet.py`` and
``models/evaluator.py``: the same module names (so a state dict with the original names loads into them
strictly) and the same forward pass (×2 bilinear upsampling, ``torch.cat([skip, up])``, the map and class
heads). Files are written with random values in the original names and shapes, imported, and checked
tensor by tensor and map by map against these re-statements. The full-size layout (ResNet-50, VGG16,
base width 64, 200 classes) is checked on the meta device; the value tests use a ResNet-18 backbone, a
SqueezeNet evaluator (no BatchNorm, like VGG16; VGG16's 138 M parameters would make every file 0.5 GB),
base width 4 and 5 or 3 classes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import import_original  # noqa: E402
import synthetic  # noqa: E402
import train_ornet  # noqa: E402
from ornet import checkpoint, stages  # noqa: E402
from ornet.config import load_config  # noqa: E402
from ornet.models import CoarseNet, FineNet, build_classifier  # noqa: E402

import lowcam  # noqa: E402

SYNTHETIC = EXAMPLES / "configs" / "synthetic.yaml"


# --------------------------------------------------------------------- the authors' networks, re-stated


class AuthorsConv(nn.Module):
    """``UNetConv(activation='leakyrelu')``: the block lives in ``UConv``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.UConv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.LeakyReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.UConv(x)
        return out


class AuthorsUp(nn.Module):
    """``Up``: ×2 bilinear upsampling (align_corners=False), ``cat([skip, up])``, block in ``conv``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = AuthorsConv(c_in, c_out)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, up], dim=1))  # type: ignore[no-any-return]


class AuthorsUNet(nn.Module):
    """``UNet(c_in, n_classes, c_base)``."""

    def __init__(self, c_in: int, n_classes: int, c_base: int) -> None:
        super().__init__()
        b = c_base
        self.down_1 = nn.Sequential(nn.MaxPool2d(2), AuthorsConv(c_in, 2 * b))
        self.down_2 = nn.Sequential(nn.MaxPool2d(2), AuthorsConv(2 * b, 4 * b))
        self.down_3 = nn.Sequential(nn.MaxPool2d(2), AuthorsConv(4 * b, 8 * b))
        self.up_1 = AuthorsUp(12 * b, 4 * b)
        self.up_2 = AuthorsUp(6 * b, 3 * b)
        self.up_3 = AuthorsUp(3 * b + c_in, n_classes)

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        x2 = self.down_1(x1)
        x3 = self.down_2(x2)
        x4 = self.down_3(x3)
        return self.up_3(self.up_2(self.up_1(x4, x3), x2), x1)  # type: ignore[no-any-return]


class AuthorsEvaluator(nn.Module):
    """``Evaluator``: the torchvision classifier under ``model``."""

    def __init__(self, arch: str, num_classes: int) -> None:
        super().__init__()
        self.model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # type: ignore[no-any-return]


class AuthorsCoarse(nn.Module):
    """``CoarseModel``: ResNet stem, ``att_layer4`` U-Net, heads ``att_conv2`` / ``att_conv3`` + ``bn_att3``,
    the rest of the ResNet on ``stem × att``. ``forward`` returns (generator logits, main logits, att,
    class maps). The authors pool with ``AvgPool2d(56)``; over a 56×56 map that is the mean used here."""

    def __init__(self, arch: str, num_classes: int, c_base: int, fc_classes: int | None = None) -> None:
        super().__init__()
        self.att_layer4 = AuthorsUNet(64, num_classes, c_base)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)
        # the authors' ResNet head: 1000-way (torchvision's default) for a class count other than 200
        head = num_classes if fc_classes is None else fc_classes
        resnet = torchvision.models.get_model(arch, weights=None, num_classes=head)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))
        self.avgpool = resnet.avgpool
        self.fc = resnet.fc

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        low = self.stem(x)
        class_maps = self.att_layer4(low)
        att = torch.sigmoid(self.bn_att3(self.att_conv3(class_maps)))
        generator_logits = self.att_conv2(class_maps).mean(dim=(2, 3))
        main = low * att
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            main = layer(main)
        logits = self.fc(torch.flatten(self.avgpool(main), 1))
        return generator_logits, logits, att, class_maps


class AuthorsFine(nn.Module):
    """``FineModel``: stem, ``att_layer4``, ``att_conv3`` + ``bn_att3`` and the evaluator as ``vgg``
    (no ``att_conv2``, no ResNet body). ``forward`` is the inference path: (att, evaluator logits on the
    plain image)."""

    def __init__(self, arch: str, evaluator_arch: str, num_classes: int, c_base: int) -> None:
        super().__init__()
        coarse = AuthorsCoarse(arch, num_classes, c_base)
        for name in ("conv1", "bn1", "relu", "maxpool", "att_layer4", "att_conv3", "bn_att3"):
            setattr(self, name, getattr(coarse, name))
        self.vgg = AuthorsEvaluator(evaluator_arch, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        att = torch.sigmoid(self.bn_att3(self.att_conv3(self.att_layer4(low))))
        return att, self.vgg(x)


# ------------------------------------------------------------------------------------ the expected map


def expected_name(original: str) -> str:
    """Where each original tensor must land, written as regular expressions (independent of the
    importer's prefix table)."""
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"conv1\.(.+)", lambda m: f"stem.0.{m[1]}"),
        (r"bn1\.(.+)", lambda m: f"stem.1.{m[1]}"),
        (r"layer([1-4])\.(.+)", lambda m: f"body.{int(m[1]) - 1}.{m[2]}"),
        (r"fc\.(.+)", lambda m: f"body.6.{m[1]}"),
        (
            r"att_layer4\.down_([123])\.1\.UConv\.([0134])\.(.+)",
            lambda m: f"generator.down{m[1]}.{m[2]}.{m[3]}",
        ),
        (
            r"att_layer4\.up_([123])\.conv\.UConv\.([0134])\.(.+)",
            lambda m: f"generator.up{m[1]}.block.{m[2]}.{m[3]}",
        ),
        (r"att_conv3\.weight", lambda m: "generator.map_head.0.weight"),
        (r"bn_att3\.(.+)", lambda m: f"generator.map_head.1.{m[1]}"),
        (r"att_conv2\.weight", lambda m: "generator.class_head.weight"),
        (r"model\.(.+)", lambda m: m[1]),
    ]
    for pattern, name in patterns:
        match = re.fullmatch(pattern, original)
        if match:
            return name(match)
    raise AssertionError(f"no expected name for {original}")


# ------------------------------------------------------------------------------------------- fixtures

BACKBONE, EVALUATOR, WIDTH = "resnet18", "squeezenet1_1", 4


def randomize(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Give every parameter and buffer random values (positive running variances); its state dict."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dtype == torch.long:
                tensor.fill_(int(torch.randint(0, 1000, (), generator=generator)))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return {k: v.clone() for k, v in module.state_dict().items()}


class AuthorsFiles:
    """The three files as the authors' scripts save them, and the networks they come from."""

    def __init__(self, folder: Path, num_classes: int, fc_classes: int | None = None) -> None:
        torch.manual_seed(0)
        self.num_classes = num_classes
        self.coarse = AuthorsCoarse(BACKBONE, num_classes, WIDTH, fc_classes).eval()
        self.evaluator = AuthorsEvaluator(EVALUATOR, num_classes).eval()
        self.fine = AuthorsFine(BACKBONE, EVALUATOR, num_classes, WIDTH).eval()
        self.coarse_state = randomize(self.coarse, 1)
        self.evaluator_state = randomize(self.evaluator, 2)
        # stage 2 changes the generator and the stem's BN statistics; the evaluator inside is the same
        fine_state = randomize(self.fine, 3)
        fine_state.update({f"vgg.{k}": v for k, v in self.evaluator_state.items()})
        self.fine.load_state_dict(fine_state)
        self.fine_state = {k: v.clone() for k, v in self.fine.state_dict().items()}
        self.folder = folder
        self.paths = {
            "evaluator": self.save("evaluator.pth", self.evaluator_state, epoch=12, best_acc=77.5),
            "coarse": self.save("coarse.pth", self.coarse_state, epoch=70),
            "fine": self.save("fine.pth", self.fine_state, best_threshold=0.35),
        }

    def save(self, name: str, state: dict[str, torch.Tensor], **extra: object) -> Path:
        path = self.folder / name
        optimizer = {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1]}]}
        torch.save(
            {"state_dict": state, "optimizer": optimizer, "lr_scheduler": {"T_max": 10}, **extra}, path
        )
        return path

    def argv(self, out: Path, *extra: str, fine: bool = True, classes: int | None = None) -> list[str]:
        args = [
            "--config", str(SYNTHETIC), "--output_dir", str(out),
            "--model.backbone", BACKBONE, "--model.evaluator", EVALUATOR, "--model.base_width", str(WIDTH),
            "--evaluator", str(self.paths["evaluator"]), "--coarse", str(self.paths["coarse"]),
        ]  # fmt: skip
        if fine:
            args += ["--fine", str(self.paths["fine"])]
        return [*args, *extra]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> AuthorsFiles:
    return AuthorsFiles(tmp_path_factory.mktemp("authors"), num_classes=5)


@pytest.fixture(scope="module")
def imported(files: AuthorsFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported")
    assert import_original.main(files.argv(out)) == 0
    return out


# ------------------------------------------------------------------------------------------- the map


def test_full_size_layout_of_the_authors_networks_maps_exactly() -> None:
    """ResNet-50 + U-Net (width 64) + VGG16 at 200 classes: every original name and shape has its place
    in the pipeline's networks, and every pipeline tensor has its original (meta device: shapes only)."""
    with torch.device("meta"):
        coarse = AuthorsCoarse("resnet50", 200, 64)
        evaluator = AuthorsEvaluator("vgg16", 200)
        fine = AuthorsFine("resnet50", "vgg16", 200, 64)
        pipeline_coarse = CoarseNet(build_classifier("resnet50", 200), 200, 64)
        pipeline_evaluator = build_classifier("vgg16", 200)
    src = Path("authors.pth")
    done = import_original.convert(
        coarse.state_dict(), import_original.COARSE_RULES, pipeline_coarse.state_dict(), src, "coarse"
    )
    assert set(done.state) == set(pipeline_coarse.state_dict()) and not done.filled
    assert len(coarse.state_dict()) == len(pipeline_coarse.state_dict()) == 399
    for original, tensor in coarse.state_dict().items():
        assert done.state[expected_name(original)].shape == tensor.shape
    up3 = done.state["generator.up3.block.0.weight"]
    assert tuple(up3.shape) == (200, 3 * 64 + 64, 3, 3)
    done = import_original.convert(
        evaluator.state_dict(), import_original.EVALUATOR_RULES, pipeline_evaluator.state_dict(), src, "ev"
    )
    assert set(done.state) == set(pipeline_evaluator.state_dict())
    assert tuple(done.state["classifier.6.weight"].shape) == (200, 4096)
    fine_keys = set(fine.state_dict())
    assert "att_conv2.weight" not in fine_keys and not any(k.startswith("layer") for k in fine_keys)
    generator_part = {k for k in fine_keys if not k.startswith("vgg.")}
    pipeline_fine = set(FineNet(pipeline_coarse).state_dict())
    assert {expected_name(k) for k in generator_part} == pipeline_fine - {"generator.class_head.weight"}
    assert {k.removeprefix("vgg.") for k in fine_keys - generator_part} == set(evaluator.state_dict())


def test_every_tensor_lands_where_it_should(files: AuthorsFiles, imported: Path) -> None:
    evaluator = checkpoint.load(imported / "evaluator.pt")
    coarse = checkpoint.load(imported / "coarse.pt")
    fine = checkpoint.load(imported / "fine.pt")
    for original, tensor in files.evaluator_state.items():
        assert torch.equal(evaluator["model"][expected_name(original)], tensor), original
    for original, tensor in files.coarse_state.items():
        assert torch.equal(coarse["model"][expected_name(original)], tensor), original
    generator_part = {k: v for k, v in files.fine_state.items() if not k.startswith("vgg.")}
    for original, tensor in generator_part.items():
        assert torch.equal(fine["model"][expected_name(original)], tensor), original
    # the fine file has no class head: stage 2 never trains it, so it is the coarse model's
    assert torch.equal(fine["model"]["generator.class_head.weight"], files.coarse_state["att_conv2.weight"])
    assert len(evaluator["model"]) == len(files.evaluator_state)
    assert len(coarse["model"]) == len(files.coarse_state)
    assert len(fine["model"]) == len(generator_part) + 1
    # strict loads into the pipeline's networks
    CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH).load_state_dict(coarse["model"])
    FineNet(CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH)).load_state_dict(fine["model"])
    build_classifier(EVALUATOR, 5).load_state_dict(evaluator["model"])


def test_payload_is_a_complete_pipeline_checkpoint(files: AuthorsFiles, imported: Path) -> None:
    for stage, source in (("evaluator", "evaluator"), ("coarse", "coarse"), ("fine", "fine")):
        state = checkpoint.load(imported / f"{stage}.pt")  # weights_only=True
        assert {"model", "optimizer", "scheduler", "rng", "config", "classes", "epoch", "epochs"} <= set(
            state
        )
        assert state["complete"] is True and state["epoch"] == state["epochs"]
        assert state["config"]["model"]["base_width"] == WIDTH
        assert state["config"]["output_dir"] == str(imported)
        assert state["classes"] == [str(k) for k in range(5)]
        assert state["imported_from"]["file"] == str(files.paths[source].resolve())
        assert len(state["imported_from"]["sha256"]) == 64
    assert not list(imported.glob(".*.tmp"))


def test_imported_maps_equal_the_authors_forward(files: AuthorsFiles, imported: Path) -> None:
    """The authors' networks with their weights and the pipeline's with the imported ones give the same
    maps and class maps bit for bit, and the same logits (64×64 images: 16×16 maps, a multiple of 8 as
    the authors need)."""
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    coarse = CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH).eval()
    coarse.load_state_dict(checkpoint.load(imported / "coarse.pt")["model"])
    fine = FineNet(CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH)).eval()
    fine.load_state_dict(checkpoint.load(imported / "fine.pt")["model"])
    classifier = build_classifier(EVALUATOR, 5)
    classifier.load_state_dict(checkpoint.load(imported / "evaluator.pt")["model"])
    evaluator = lowcam.Evaluator(classifier).eval()
    with torch.no_grad():
        generator_logits, logits, att, class_maps = files.coarse(images)
        out = coarse(images)
        assert torch.equal(out.generator.activation, att)
        assert torch.equal(out.generator.class_maps, class_maps)
        torch.testing.assert_close(out.generator.logits, generator_logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)
        fine_att, fine_logits = files.fine(images)
        assert torch.equal(fine(images).activation, fine_att)
        torch.testing.assert_close(evaluator(images), fine_logits, rtol=1e-5, atol=1e-6)
        # lowcam's generator built directly with the fine file's tensors gives the same map
        generator = lowcam.LowLevelActivationGenerator(64, 5, base_width=WIDTH).eval()
        generator.load_state_dict(
            {
                expected_name(k).removeprefix("generator."): v
                for k, v in files.fine_state.items()
                if k.startswith(("att_", "bn_att3"))
            }
            | {"class_head.weight": files.coarse_state["att_conv2.weight"]}
        )
        torch.testing.assert_close(generator(fine.stem(images)).activation, fine_att, rtol=0, atol=1e-6)
        assert not torch.allclose(fine_att, att)  # the two files really hold different maps


def test_dataparallel_prefix_and_missing_batch_counters_are_accepted(
    files: AuthorsFiles, tmp_path: Path
) -> None:
    state = {f"module.{k}": v for k, v in files.coarse_state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "coarse_dp.pth"
    torch.save({"state_dict": state}, path)
    argv = files.argv(tmp_path / "out", fine=False)
    argv[argv.index("--coarse") + 1] = str(path)
    assert import_original.main(argv) == 0
    coarse = checkpoint.load(tmp_path / "out" / "coarse.pt")
    assert torch.equal(
        coarse["model"]["generator.up2.block.0.weight"],
        files.coarse_state["att_layer4.up_2.conv.UConv.0.weight"],
    )
    assert int(coarse["model"]["stem.1.num_batches_tracked"]) == 0
    assert "bn1.num_batches_tracked" in coarse["imported_from"]["filled"]
    assert not (tmp_path / "out" / "fine.pt").exists()


# ------------------------------------------------------------------------------------------- errors


def run_with(
    files: AuthorsFiles, tmp_path: Path, which: str, state: object, capsys: pytest.CaptureFixture[str]
) -> str:
    """Import with ``which`` replaced by a file holding ``state``; return stderr (the import must fail
    and write nothing)."""
    path = tmp_path / f"bad_{which}.pth"
    torch.save(state, path)
    return run_with_path(files, tmp_path, which, path, capsys)


def run_with_path(
    files: AuthorsFiles, tmp_path: Path, which: str, path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    out = tmp_path / "out"
    argv = files.argv(out)
    argv[argv.index(f"--{which}") + 1] = str(path)
    capsys.readouterr()
    assert import_original.main(argv) == 2
    assert not out.exists() or not any(out.iterdir()), "nothing may be written when the import fails"
    return capsys.readouterr().err


def test_every_missing_unexpected_and_mismatched_key_is_listed(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(files.coarse_state)
    del state["att_layer4.up_2.conv.UConv.0.weight"]
    del state["layer3.0.bn1.running_var"]
    state["att_layer4.extra.weight"] = torch.zeros(3)
    state["module_typo.weight"] = torch.zeros(3)
    state["att_conv3.weight"] = torch.zeros(1, 5, 5, 5)
    state["bn1.weight"] = torch.zeros(63)
    err = run_with(files, tmp_path, "coarse", {"state_dict": state}, capsys)
    assert "missing keys (2)" in err and "att_layer4.up_2.conv.UConv.0.weight" in err
    assert "layer3.0.bn1.running_var" in err
    assert "unexpected keys (2)" in err and "att_layer4.extra.weight" in err and "module_typo.weight" in err
    assert "shape mismatches (2)" in err
    assert (
        "att_conv3.weight: (1, 5, 5, 5) in the file, the pipeline's generator.map_head.0.weight is (1, 5, 3, 3)"
        in err
    )
    assert "bn1.weight: (63) in the file" in err
    assert str(tmp_path / "bad_coarse.pth") in err


def test_wrong_width_and_class_count_are_explained(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert import_original.main(files.argv(out, "--model.base_width", "8")) == 2
    err = capsys.readouterr().err
    assert "base width 4" in err and "model.base_width is 8" in err
    assert "generator.down1.0.weight is (16, 64, 3, 3)" in err
    # every file's problems are reported in one go, not only the first file's
    assert "is not the authors' coarse model" in err and "is not the authors' fine model" in err
    other = AuthorsEvaluator(EVALUATOR, 7)
    err = run_with(files, tmp_path, "evaluator", {"state_dict": other.state_dict()}, capsys)
    assert "model.classifier.1.weight: (7, 512, 1, 1) in the file" in err


def test_fine_file_errors_are_listed_for_both_parts(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(files.fine_state)
    state["att_conv2.weight"] = files.coarse_state["att_conv2.weight"]  # FineModel has no class head
    del state["vgg.model.classifier.1.bias"]
    err = run_with(files, tmp_path, "fine", {"state_dict": state}, capsys)
    assert "unexpected keys (1)" in err and "att_conv2.weight" in err
    assert "vgg.model.classifier.1.bias" in err


def test_fine_file_with_another_evaluator_is_refused(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(files.fine_state)
    state["vgg.model.features.0.weight"] = state["vgg.model.features.0.weight"] + 1
    err = run_with(files, tmp_path, "fine", {"state_dict": state}, capsys)
    assert "differs from" in err and "vgg.model.features.0.weight" in err


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (torch.zeros(3), "expected a dict with a 'state_dict' entry"),
        ([1, 2, 3], "got list"),
        ({"state_dict": {}}, "non-empty dict"),
        ({"state_dict": {"conv1.weight": 1.0}}, "not named tensors"),
    ],
)
def test_files_that_are_not_state_dicts(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: object, message: str
) -> None:
    err = run_with(files, tmp_path, "evaluator", payload, capsys)
    assert message in err and str(tmp_path / "bad_evaluator.pth") in err


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_corrupted_files_give_a_clear_error(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = tmp_path / "damaged.pth"
    if damage == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(files.paths["coarse"].read_bytes()[:5000])
    else:
        path.write_bytes(b"")
    err = run_with_path(files, tmp_path, "coarse", path, capsys)
    assert str(path) in err and "cannot be read as a PyTorch checkpoint" in err
    assert "Traceback" not in err and "weights_only=False" not in err


def test_problems_of_several_files_are_reported_together(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a checkpoint")
    not_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), not_dict)
    argv = files.argv(tmp_path / "out")
    argv[argv.index("--coarse") + 1] = str(damaged)
    argv[argv.index("--fine") + 1] = str(not_dict)
    assert import_original.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: cannot be read" in err and f"{not_dict}: expected a dict" in err
    assert not (tmp_path / "out").exists()


def test_unsafe_pickle_is_refused_without_advice_to_load_it_unsafely(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = run_with(files, tmp_path, "coarse", {"state_dict": files.coarse_state, "cfg": Path("x")}, capsys)
    assert "PosixPath" in err and "refuses" in err and "weights_only=False" not in err


def test_missing_file_and_existing_outputs(
    files: AuthorsFiles, imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = run_with_path(files, tmp_path, "evaluator", tmp_path / "nope.pth", capsys)
    assert "evaluator checkpoint not found" in err
    before = (imported / "coarse.pt").stat().st_mtime_ns
    assert import_original.main(files.argv(imported)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (imported / "coarse.pt").stat().st_mtime_ns == before


def test_a_bad_override_is_a_config_error_with_status_2(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert import_original.main(files.argv(tmp_path / "out", "--data.crop", "abc")) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error:") and "data.crop" in err and "'abc'" in err
    assert not (tmp_path / "out").exists()


def test_stage1_file_with_the_authors_1000_way_fc_imports_and_loads_in_stage_2(tmp_path: Path) -> None:
    """Off 200 classes the authors' ``CoarseModel`` keeps torchvision's 1000-way ``fc``: the file imports
    at that size, and stage 2 / eval (:func:`ornet.stages.load_fine_parts`) rebuild and load it."""
    files = AuthorsFiles(tmp_path, num_classes=10, fc_classes=1000)
    out = tmp_path / "run"
    assert import_original.main(files.argv(out)) == 0
    saved = checkpoint.load(out / "coarse.pt")["model"]
    assert torch.equal(saved["body.6.weight"], files.coarse_state["fc.weight"])
    assert tuple(saved["body.6.weight"].shape) == (1000, 512)
    overrides = {"output_dir": str(out), "model.backbone": BACKBONE, "model.evaluator": EVALUATOR}
    cfg = load_config(SYNTHETIC, {**overrides, "model.base_width": str(WIDTH)})
    ctx = SimpleNamespace(cfg=cfg, num_classes=10, out=out)
    coarse = stages.load_coarse(ctx).eval()  # type: ignore[arg-type]
    fine, evaluator = stages.load_fine_parts(ctx, "coarse")  # type: ignore[arg-type]
    fine.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        generator_logits, logits, att, _ = files.coarse(x)
        got = coarse(x)
        assert got.logits.shape == (2, 1000)
        torch.testing.assert_close(got.logits, logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.generator.logits, generator_logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fine(x).activation, att, rtol=1e-4, atol=1e-5)
        assert evaluator(x).shape == (2, 10)
    # eval of the fine file goes through the same builder
    fine_net, _ = stages.load_fine_parts(ctx, "fine")  # type: ignore[arg-type]
    assert isinstance(fine_net, FineNet)


def test_fc_of_neither_the_class_count_nor_1000_is_explained(
    files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(files.coarse_state)
    state["fc.weight"], state["fc.bias"] = torch.zeros(7, 512), torch.zeros(7)
    err = run_with(files, tmp_path, "coarse", {"state_dict": state}, capsys)
    assert "fc.weight has 7 rows" in err and "or, for a class count other than 200, 1000" in err
    assert "fc.weight: (7, 512) in the file, the pipeline's body.6.weight is (5, 512)" in err


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_pipeline_evaluates_and_refines_the_imported_models(tmp_path: Path) -> None:
    """``--stage eval`` reads the imported checkpoints (both maps are evaluated on every test image), and
    ``--stage fine`` trains stage 2 from the imported coarse model, leaving the frozen stem as it was."""
    data = tmp_path / "data"
    synthetic.write_dataset(
        data,
        synthetic.SyntheticSpec(
            classes=3, train_per_class=4, test_per_class=3, min_size=36, max_size=48, seed=1
        ),
    )
    files = AuthorsFiles(tmp_path, num_classes=3)
    out = tmp_path / "run"
    assert import_original.main(files.argv(out)) == 0
    tiny = [
        "--config", str(SYNTHETIC), "--output_dir", str(out), "--data.root", str(data),
        "--data.resize", "36", "--data.crop", "32", "--data.score_size", "32",
        "--model.backbone", BACKBONE, "--model.evaluator", EVALUATOR, "--model.base_width", str(WIDTH),
        "--fine.epochs", "1", "--fine.batch_size", "4", "--fine.area.topk", "3", "--fine.area.skip", "1",
        "--eval.batch_size", "4", "--eval.pictures", "0", "--runtime.progress", "false",
    ]  # fmt: skip
    assert train_ornet.main([*tiny, "--stage", "eval"]) == 0
    import json

    results = json.loads((out / "metrics.json").read_text())
    assert set(results) == {"coarse", "fine", "center_gaussian"}
    assert all(r["ornet"]["n"] == 9 for r in results.values())
    imported_coarse = checkpoint.load(out / "coarse.pt")["model"]
    (out / "fine.pt").unlink()
    assert train_ornet.main([*tiny, "--stage", "fine"]) == 0
    refined = checkpoint.load(out / "fine.pt")
    assert refined["complete"]
    assert torch.equal(refined["model"]["stem.0.weight"], imported_coarse["stem.0.weight"])
    assert not torch.equal(
        refined["model"]["generator.up3.block.0.weight"], imported_coarse["generator.up3.block.0.weight"]
    )
    assert torch.equal(
        refined["model"]["generator.down1.0.weight"], imported_coarse["generator.down1.0.weight"]
    )


def test_config_used_for_the_payload_is_the_pipelines(files: AuthorsFiles, imported: Path) -> None:
    cfg = load_config(SYNTHETIC, {"output_dir": str(imported)})
    assert checkpoint.load(imported / "coarse.pt")["epochs"] == cfg.coarse.epochs
