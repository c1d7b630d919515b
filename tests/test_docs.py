"""The documentation's code runs: the home page's example trains, the plug-in page's code runs, and the
benchmark page's includes are sound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROOT = DOCS.parent
pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not shipped in the sdist")


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


class _ToyWSOL(nn.Module):
    """Someone else's WSOL model: an activation map and class maps from a conv layer."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.maps = nn.Conv2d(3, classes + 1, 3, stride=4, padding=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.maps(images)
        return torch.sigmoid(out[:, :1]), out[:, 1:]


def test_home_page_example_trains_a_model() -> None:
    (block,) = _python_blocks(DOCS / "index.md")
    assert len(block.strip().splitlines()) <= 20, "the home page promises a short example"
    namespace: dict[str, object] = {}
    exec(compile(block, str(DOCS / "index.md"), "exec"), namespace)
    torch.manual_seed(0)
    classes = 30
    model = _ToyWSOL(classes)
    classifier = nn.Sequential(nn.Conv2d(3, classes, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images, labels = torch.rand(4, 3, 64, 64), torch.randint(0, classes, (4,))
    training_step = namespace["training_step"]
    assert callable(training_step)
    loss = training_step(model, classifier, images, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_benchmark_includes_carry_their_environment() -> None:
    """Every results file the benchmarks page includes exists and says when and with what it was run."""
    page = (DOCS / "benchmarks.md").read_text()
    included = re.findall(r'^[ \t]*-{1,}8<-{1,}[ \t]+"([^"]+)"[ \t]*$', page, flags=re.M)
    for name in included:
        text = (ROOT / name).read_text()
        assert re.search(r"\d{4}-\d{2}-\d{2}", text), f"{name}: no date of the run"
        assert "torch" in text.lower(), f"{name}: does not say which torch version the numbers come from"


def test_generator_page_code_runs() -> None:
    """docs/components/generator.md: the backbone example (ORNet's stage 1 on split_backbone) runs."""
    pytest.importorskip("torchvision", reason="torchvision (extra 'test') is not installed")
    (block,) = _python_blocks(DOCS / "components" / "generator.md")
    exec(compile(block, str(DOCS / "components" / "generator.md"), "exec"), {})


def test_data_page_example_runs() -> None:
    """docs/data.md: the synthetic birds, read back and batched with their boxes."""
    (block,) = _python_blocks(DOCS / "data.md")
    exec(compile(block, str(DOCS / "data.md"), "exec"), {})


def test_plugin_page_code_runs_and_includes_the_example() -> None:
    """docs/plugin.md: its own code runs (the map contract's asserts hold); its excerpts are sections of
    examples/cam_with_lowcam.py that exist (mkdocs --strict fails on a missing file, not on a missing section)."""
    page = DOCS / "plugin.md"
    blocks = _python_blocks(page)
    own = [b for b in blocks if not b.lstrip().startswith("--8<--")]
    assert own, "the plugin page shows the map contract in code"
    for block in own:
        exec(compile(block, str(page), "exec"), {})
    example = (ROOT / "examples" / "cam_with_lowcam.py").read_text()
    sections = re.findall(r'--8<-- "examples/cam_with_lowcam.py:(\w+)"', page.read_text())
    assert sections, "the plugin page includes the example's code"
    for name in sections:
        assert f"# --8<-- [start:{name}]" in example and f"# --8<-- [end:{name}]" in example, name
