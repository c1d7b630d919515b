"""``examples/import_original.py`` refusing bad files: every problem listed, nothing written, exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import import_original
from _authors_files import (
    BACKBONE,
    EVALUATOR,
    SYNTHETIC,
    WIDTH,
    AuthorsEvaluator,
    AuthorsFiles,
)
from ornet import checkpoint, stages
from ornet.config import load_config
from ornet.models import FineNet

# ------------------------------------------------------------------------------------------- errors


def run_with(
    authors_files: AuthorsFiles, tmp_path: Path, which: str, state: object, capsys: pytest.CaptureFixture[str]
) -> str:
    """Import with ``which`` replaced by a file holding ``state``; return stderr (the import must fail
    and write nothing)."""
    path = tmp_path / f"bad_{which}.pth"
    torch.save(state, path)
    return run_with_path(authors_files, tmp_path, which, path, capsys)


def run_with_path(
    authors_files: AuthorsFiles, tmp_path: Path, which: str, path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    out = tmp_path / "out"
    argv = authors_files.argv(out)
    argv[argv.index(f"--{which}") + 1] = str(path)
    capsys.readouterr()
    assert import_original.main(argv) == 2
    assert not out.exists() or not any(out.iterdir()), "nothing may be written when the import fails"
    return capsys.readouterr().err


def test_every_missing_unexpected_and_mismatched_key_is_listed(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(authors_files.coarse_state)
    del state["att_layer4.up_2.conv.UConv.0.weight"]
    del state["layer3.0.bn1.running_var"]
    state["att_layer4.extra.weight"] = torch.zeros(3)
    state["module_typo.weight"] = torch.zeros(3)
    state["att_conv3.weight"] = torch.zeros(1, 5, 5, 5)
    state["bn1.weight"] = torch.zeros(63)
    err = run_with(authors_files, tmp_path, "coarse", {"state_dict": state}, capsys)
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
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert import_original.main(authors_files.argv(out, "--model.base_width", "8")) == 2
    err = capsys.readouterr().err
    assert "base width 4" in err and "model.base_width is 8" in err
    assert "generator.down1.0.weight is (16, 64, 3, 3)" in err
    # every file's problems are reported in one go, not only the first file's
    assert "is not the authors' coarse model" in err and "is not the authors' fine model" in err
    other = AuthorsEvaluator(EVALUATOR, 7)
    err = run_with(authors_files, tmp_path, "evaluator", {"state_dict": other.state_dict()}, capsys)
    assert "model.classifier.1.weight: (7, 512, 1, 1) in the file" in err


def test_fine_file_errors_are_listed_for_both_parts(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(authors_files.fine_state)
    state["att_conv2.weight"] = authors_files.coarse_state["att_conv2.weight"]  # FineModel has no class head
    del state["vgg.model.classifier.1.bias"]
    err = run_with(authors_files, tmp_path, "fine", {"state_dict": state}, capsys)
    assert "unexpected keys (1)" in err and "att_conv2.weight" in err
    assert "vgg.model.classifier.1.bias" in err


def test_fine_file_with_another_evaluator_is_refused(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(authors_files.fine_state)
    state["vgg.model.features.0.weight"] = state["vgg.model.features.0.weight"] + 1
    err = run_with(authors_files, tmp_path, "fine", {"state_dict": state}, capsys)
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
    authors_files: AuthorsFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    payload: object,
    message: str,
) -> None:
    err = run_with(authors_files, tmp_path, "evaluator", payload, capsys)
    assert message in err and str(tmp_path / "bad_evaluator.pth") in err


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_corrupted_files_give_a_clear_error(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = tmp_path / "damaged.pth"
    if damage == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(authors_files.paths["coarse"].read_bytes()[:5000])
    else:
        path.write_bytes(b"")
    err = run_with_path(authors_files, tmp_path, "coarse", path, capsys)
    assert str(path) in err and "cannot be read as a PyTorch checkpoint" in err
    assert "Traceback" not in err and "weights_only=False" not in err


def test_problems_of_several_files_are_reported_together(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a checkpoint")
    not_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), not_dict)
    argv = authors_files.argv(tmp_path / "out")
    argv[argv.index("--coarse") + 1] = str(damaged)
    argv[argv.index("--fine") + 1] = str(not_dict)
    assert import_original.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: cannot be read" in err and f"{not_dict}: expected a dict" in err
    assert not (tmp_path / "out").exists()


def test_unsafe_pickle_is_refused_without_advice_to_load_it_unsafely(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = run_with(
        authors_files,
        tmp_path,
        "coarse",
        {"state_dict": authors_files.coarse_state, "cfg": Path("x")},
        capsys,
    )
    assert "PosixPath" in err and "refuses" in err and "weights_only=False" not in err


def test_missing_file_and_existing_outputs(
    authors_files: AuthorsFiles, authors_imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = run_with_path(authors_files, tmp_path, "evaluator", tmp_path / "nope.pth", capsys)
    assert "evaluator checkpoint not found" in err
    before = (authors_imported / "coarse.pt").stat().st_mtime_ns
    assert import_original.main(authors_files.argv(authors_imported)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (authors_imported / "coarse.pt").stat().st_mtime_ns == before


def test_a_bad_override_is_a_config_error_with_status_2(
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert import_original.main(authors_files.argv(tmp_path / "out", "--data.crop", "abc")) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error:") and "data.crop" in err and "'abc'" in err
    assert not (tmp_path / "out").exists()


def test_stage1_file_with_the_authors_1000_way_fc_imports_and_loads_in_stage_2(tmp_path: Path) -> None:
    """Off 200 classes the authors' ``CoarseModel`` keeps torchvision's 1000-way ``fc``: the file imports
    at that size, and stage 2 / eval (:func:`ornet.stages.load_fine_parts`) rebuild and load it."""
    authors_files = AuthorsFiles(tmp_path, num_classes=10, fc_classes=1000)
    out = tmp_path / "run"
    assert import_original.main(authors_files.argv(out)) == 0
    saved = checkpoint.load(out / "coarse.pt")["model"]
    assert torch.equal(saved["body.6.weight"], authors_files.coarse_state["fc.weight"])
    assert tuple(saved["body.6.weight"].shape) == (1000, 512)
    overrides = {"output_dir": str(out), "model.backbone": BACKBONE, "model.evaluator": EVALUATOR}
    cfg = load_config(SYNTHETIC, {**overrides, "model.base_width": str(WIDTH)})
    ctx = SimpleNamespace(cfg=cfg, num_classes=10, out=out)
    coarse = stages.load_coarse(ctx).eval()  # type: ignore[arg-type]
    fine, evaluator = stages.load_fine_parts(ctx, "coarse")  # type: ignore[arg-type]
    fine.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        generator_logits, logits, att, _ = authors_files.coarse(x)
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
    authors_files: AuthorsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(authors_files.coarse_state)
    state["fc.weight"], state["fc.bias"] = torch.zeros(7, 512), torch.zeros(7)
    err = run_with(authors_files, tmp_path, "coarse", {"state_dict": state}, capsys)
    assert "fc.weight has 7 rows" in err and "or, for a class count other than 200, 1000" in err
    assert "fc.weight: (7, 512) in the file, the pipeline's body.6.weight is (5, 512)" in err
