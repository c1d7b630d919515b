"""``benchmarks/compare_original.py`` against the authors' code, when a checkout of it is at hand.

The checkout is found at ``$LOWCAM_ORNET_ORIGINAL`` or next to the repository (``../ornet-original``);
without one the tests are skipped. Only the cheap parts run here: attentive erasing with the authors'
draws, and one stage-1 step (ResNet-50 + generator, batch 2, float64).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = Path(os.environ.get("LOWCAM_ORNET_ORIGINAL", ROOT.parent / "ornet-original"))

pytestmark = pytest.mark.skipif(
    not (ORIGINAL / "models" / "model.py").is_file(),
    reason=f"no checkout of the authors' ORNet at {ORIGINAL} (set LOWCAM_ORNET_ORIGINAL)",
)


@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    pytest.importorskip("torchvision")
    from benchmarks import compare_original

    return compare_original, compare_original.import_authors(ORIGINAL)


def test_erasing_with_the_authors_draws_differs_only_on_row_0_and_column_0(harness) -> None:  # type: ignore[no-untyped-def]
    compare_original, authors = harness
    torch.manual_seed(4)
    np.random.seed(4)
    smooth = F.interpolate(torch.rand(48, 1, 7, 7, dtype=torch.float64), size=(56, 56), mode="bilinear")
    result = compare_original.erasing_check(authors, torch.sigmoid((smooth - 0.5) * 8))
    assert result["erased_maps"] > 10 and result["region_pixels"] > 1000
    assert result["region_differ_off_row0_col0"] == 0
    assert result["output_where_regions_agree"] == 0.0
    # the documented fix shows: the authors' code never erases row 0 or column 0, lowcam does
    assert result["region_differ"] > 0


def test_one_stage_1_step_matches(harness) -> None:  # type: ignore[no-untyped-def]
    compare_original, authors = harness
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    labels = torch.tensor([3, 150])
    rows, _ = compare_original.stage_coarse(authors, images, labels, 1)
    (row,) = rows
    assert row["map"] < 1e-12 and row["logits"] < 1e-12 and row["generator_logits"] < 1e-12
    assert row["loss"] < 1e-5  # the recipe takes the cross-entropies in float32
    assert row["params"] < 1e-6 and row["buffers"] < 1e-12
    assert row["tensors"] == 399
