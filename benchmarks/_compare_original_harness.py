"""The harness of ``compare_original.py``: the authors' code imported and patched for a CPU machine without a
network, their erasing's random draws recorded and replayed into lowcam's, and the differences of tensors and
state dicts."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

import lowcam.ops.erasing_torch as _erasing_torch  # (the draws are patched, see RecordedDraws)

__all__ = [
    "RecordedDraws",
    "compare_states",
    "import_authors",
    "max_abs",
    "optimiser_step",
    "patched_for_cpu",
    "reseed_before_forward",
]

# ------------------------------------------------------------------------------ the authors' code, patched


@contextlib.contextmanager
def patched_for_cpu() -> Iterator[None]:
    """While the authors' code runs: no download (``pretrained=True`` builds random weights) and
    ``.cuda()`` is the identity."""
    saved = {
        "resnet50": torchvision.models.resnet50,
        "vgg16": torchvision.models.vgg16,
        "cuda": torch.Tensor.cuda,
    }

    def no_download(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        def build(*args: Any, pretrained: bool = False, **kwargs: Any) -> nn.Module:
            kwargs.pop("weights", None)
            return builder(*args, weights=None, **kwargs)

        return build

    torchvision.models.resnet50 = no_download(saved["resnet50"])  # type: ignore[assignment]
    torchvision.models.vgg16 = no_download(saved["vgg16"])  # type: ignore[assignment]
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torchvision.models.resnet50 = saved["resnet50"]  # type: ignore[assignment]
        torchvision.models.vgg16 = saved["vgg16"]  # type: ignore[assignment]
        torch.Tensor.cuda = saved["cuda"]  # type: ignore[method-assign]


def import_authors(path: Path) -> dict[str, Any]:
    """The authors' modules, imported from ``path`` (their ``models`` package)."""
    if not (path / "models" / "model.py").is_file():
        raise FileNotFoundError(
            f"--original {path}: no models/model.py (not a checkout of Sierkinhane/ORNet)"
        )
    sys.path.insert(0, str(path))
    with patched_for_cpu():
        modules = {name: importlib.import_module(f"models.{name}") for name in ("model", "loss", "erasing")}
    return modules


# ------------------------------------------------------------------------------------------ comparisons


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    return float((a.detach().double() - b.detach().double()).abs().max())


def compare_states(
    original: Mapping[str, torch.Tensor],
    ours: Mapping[str, torch.Tensor],
    rename: Callable[[str], str | None],
) -> dict[str, Any]:
    """The columns ``params``, ``params_worst``, ``buffers``, ``buffers_worst`` and ``tensors`` of a step's
    row: the largest parameter difference and its name, the largest buffer difference and its name, and the
    number of tensors compared, over every tensor of ``original`` that ``rename`` maps into ``ours`` (every
    one must map)."""
    worst = {"param": (0.0, "-"), "buffer": (0.0, "-")}
    count = 0
    for name, tensor in original.items():
        target = rename(name)
        if target is None or target not in ours:
            raise KeyError(f"the original's {name} has no counterpart ({target})")
        kind = "buffer" if ("running_" in name or "num_batches" in name) else "param"
        diff = max_abs(tensor.double(), ours[target].double())
        if worst[kind][1] == "-" or diff > worst[kind][0]:
            worst[kind] = (diff, name)
        count += 1
    return {
        "params": worst["param"][0],
        "params_worst": worst["param"][1],
        "buffers": worst["buffer"][0],
        "buffers_worst": worst["buffer"][1],
        "tensors": count,
    }


def reseed_before_forward(module: nn.Module, seeds: list[int]) -> None:
    """Reseed torch's generator before each forward of ``module`` with ``seeds[0]`` (the caller moves it):
    the two VGG16s draw the same dropout masks."""

    def reseed(_module: nn.Module, _inputs: Any) -> None:
        torch.manual_seed(seeds[0])

    module.register_forward_pre_hook(reseed)


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One step of ``optimiser`` down the gradient of ``loss``."""
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


# ------------------------------------------------------------------------------- the authors' random draws


class RecordedDraws:
    """Records the random numbers the authors' erasing draws (NumPy's uniform and binomial, torch's rand and
    randint inside ``models/erasing.py``) and turns them into the draws of lowcam's torch backend."""

    def __init__(self, erasing_module: Any) -> None:
        self.module = erasing_module
        self.calls: list[tuple[str, Any]] = []

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        np_random = self.module.np.random
        torch_mod = self.module.torch
        saved = (np_random.uniform, np_random.binomial, torch_mod.rand, torch_mod.randint)

        def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                value = fn(*args, **kwargs)
                self.calls.append((name, value))
                return value

            return call

        np_random.uniform, np_random.binomial = wrap("uniform", saved[0]), wrap("binomial", saved[1])
        torch_mod.rand, torch_mod.randint = wrap("rand", saved[2]), wrap("randint", saved[3])
        try:
            yield
        finally:
            np_random.uniform, np_random.binomial, torch_mod.rand, torch_mod.randint = saved

    def lowcam_draws(self, p: torch.Tensor, args: Any) -> Any:
        """lowcam's draws equal to the recorded ones, for the map ``p`` ``(B, 1, H, W)`` (the original's
        ``att``; the half-size fractions land on the same integer half-sizes)."""
        calls = list(self.calls)
        name, factor = calls.pop(0)
        assert name == "uniform", name
        batch, _, height, width = p.shape
        chosen = torch.zeros(batch, dtype=torch.bool)
        half = torch.full((batch, 2), 0.5, dtype=torch.float64)
        maps = p.detach().double().reshape(batch, height, width)
        for j in range(batch):
            name, value = calls.pop(0)
            assert name == "rand", name
            if not float(value) < args.erase_prob:
                continue
            chosen[j] = True
            m = maps[j]
            threshold = m.max() - (m.max() - m.min()) * factor
            ys, xs = torch.nonzero(m > threshold, as_tuple=True)
            extents = (int(ys.max() - ys.min()), int(xs.max() - xs.min()))
            for axis, low in ((0, args.min_size_y), (1, args.min_size_x)):
                if not calls or calls[0][0] != "randint":
                    break  # the original gave up on this sample (randint raised): lowcam's span is empty too
                _, drawn = calls.pop(0)
                span = extents[axis] // 2 - low
                half[j, axis] = (int(drawn) - low + 0.5) / span
        binomials = [value for name, value in calls if name == "binomial"]
        keep = torch.as_tensor(np.stack(binomials), dtype=torch.float32).view(batch, 1, height, width)
        # the factor itself (the draws hold min + (max - min) * u), in float64 as NumPy drew it
        return _erasing_torch._Draws(torch.full((batch,), factor, dtype=torch.float64), chosen, half, keep)
