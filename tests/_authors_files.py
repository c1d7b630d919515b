"""The authors' networks and checkpoint files for the tests of ``examples/import_original.py``.

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

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


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
