"""README.md: every ```python block runs on its own (a reader copies one, not all), the "What is in it" table
lists every public piece, and its results table is the benchmark's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lowcam
from lowcam import metrics

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)

#: the metrics' entry points a user looks for (the rest of lowcam.metrics are their types and helpers)
_METRICS_PIECES = [
    "BoxAccuracy",
    "LocalizationAccuracy",
    "MaxBoxAcc",
    "localization_accuracy",
    "max_box_acc",
    "PxAP",
    "prepare_scoremap",
    "boxes_all_pixels",
    "contour_boxes",
    "box_iou",
    "box_from_map",
    "plot_localization",
    "read_wsol_metadata",
    "wsoleval_gt_boxes",
    "ornet_gt_boxes",
    "WSOLDataset",
    "evaluate_model",
    "write_scoremaps",
    "ScoremapWriter",
]


def test_the_readme_has_python_blocks() -> None:
    assert len(_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(_BLOCKS)))
def test_each_readme_block_runs_on_its_own(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    block = _BLOCKS[index]
    for module in re.findall(r"^import (\w+)", block, flags=re.M):
        pytest.importorskip(module, reason=f"README block {index} needs {module}")
    exec(compile(block, f"{README}:block{index}", "exec"), {"__name__": "__readme__"})


def test_the_table_lists_every_public_piece() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("## What is in it")
    table = text[start : text.index("\n## ", start + 3)]
    listed = set(re.findall(r"`([\w.]+)`", table))
    top = [n for n in lowcam.__all__ if n not in ("data", "metrics", "__version__")]
    missing = [n for n in top if n not in listed]
    missing += [n for n in _METRICS_PIECES if n not in listed and f"lowcam.metrics.{n}" not in listed]
    assert not missing, f"the README's table misses {missing}"
    assert all(n in metrics.__all__ for n in _METRICS_PIECES)


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize(
    ("results_file", "module"),
    [
        ("localization.json", "benchmarks._localization_summary"),  # from scratch
        ("pretrained.json", "benchmarks.bench_pretrained"),  # ORNet, pretrained backbone
        ("plugin_pretrained.json", "benchmarks.bench_plugin_pretrained"),  # the plug-in pair, pretrained
    ],
)
def test_readme_results_tables_are_the_benchmarks(results_file: str, module: str) -> None:
    """Each results table in the README is the one its benchmark last wrote (its ``readme_table``), with
    that run's commit: a stale table fails here."""
    import importlib
    import json
    import sys

    root = README.parent
    results = json.loads((root / "benchmarks" / "results" / results_file).read_text())
    sys.path.insert(0, str(root / "examples"))
    sys.path.insert(0, str(root))
    readme_table = importlib.import_module(module).readme_table

    text = README.read_text(encoding="utf-8")
    assert readme_table(results) in text
    assert results["environment"]["commit"] in text
    assert not results["quick"]
