"""``examples/import_original.py``: the authors' checkpoints (github.com/Sierkinhane/ORNet) into the pipeline.

Files written with random values in the authors' names and shapes (their networks re-stated in
``tests/_authors_files.py``, with the reason for the small networks) are imported and checked tensor by
tensor and map by map; the refusals are in ``test_import_original_errors.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import import_original
import train_ornet
from _authors_files import (
    BACKBONE,
    EVALUATOR,
    SYNTHETIC,
    WIDTH,
    AuthorsCoarse,
    AuthorsEvaluator,
    AuthorsFiles,
    AuthorsFine,
    expected_name,
)
from ornet import checkpoint
from ornet.config import load_config
from ornet.models import CoarseNet, FineNet, build_classifier

import lowcam

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


def test_every_tensor_lands_where_it_should(authors_files: AuthorsFiles, authors_imported: Path) -> None:
    evaluator = checkpoint.load(authors_imported / "evaluator.pt")
    coarse = checkpoint.load(authors_imported / "coarse.pt")
    fine = checkpoint.load(authors_imported / "fine.pt")
    for original, tensor in authors_files.evaluator_state.items():
        assert torch.equal(evaluator["model"][expected_name(original)], tensor), original
    for original, tensor in authors_files.coarse_state.items():
        assert torch.equal(coarse["model"][expected_name(original)], tensor), original
    generator_part = {k: v for k, v in authors_files.fine_state.items() if not k.startswith("vgg.")}
    for original, tensor in generator_part.items():
        assert torch.equal(fine["model"][expected_name(original)], tensor), original
    # the fine file has no class head: stage 2 never trains it, so it is the coarse model's
    assert torch.equal(
        fine["model"]["generator.class_head.weight"], authors_files.coarse_state["att_conv2.weight"]
    )
    assert len(evaluator["model"]) == len(authors_files.evaluator_state)
    assert len(coarse["model"]) == len(authors_files.coarse_state)
    assert len(fine["model"]) == len(generator_part) + 1
    # strict loads into the pipeline's networks
    CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH).load_state_dict(coarse["model"])
    FineNet(CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH)).load_state_dict(fine["model"])
    build_classifier(EVALUATOR, 5).load_state_dict(evaluator["model"])


def test_payload_is_a_complete_pipeline_checkpoint(
    authors_files: AuthorsFiles, authors_imported: Path
) -> None:
    for stage, source in (("evaluator", "evaluator"), ("coarse", "coarse"), ("fine", "fine")):
        state = checkpoint.load(authors_imported / f"{stage}.pt")  # weights_only=True
        assert {"model", "optimizer", "scheduler", "rng", "config", "classes", "epoch", "epochs"} <= set(
            state
        )
        assert state["complete"] is True and state["epoch"] == state["epochs"]
        assert state["config"]["model"]["base_width"] == WIDTH
        assert state["config"]["output_dir"] == str(authors_imported)
        assert state["classes"] == [str(k) for k in range(5)]
        assert state["imported_from"]["file"] == str(authors_files.paths[source].resolve())
        assert len(state["imported_from"]["sha256"]) == 64
    assert not list(authors_imported.glob(".*.tmp"))


def test_imported_maps_equal_the_authors_forward(authors_files: AuthorsFiles, authors_imported: Path) -> None:
    """The authors' networks with their weights and the pipeline's with the imported ones give the same
    maps and class maps bit for bit, and the same logits (64×64 images: 16×16 maps, a multiple of 8 as
    the authors need)."""
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    coarse = CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH).eval()
    coarse.load_state_dict(checkpoint.load(authors_imported / "coarse.pt")["model"])
    fine = FineNet(CoarseNet(build_classifier(BACKBONE, 5), 5, WIDTH)).eval()
    fine.load_state_dict(checkpoint.load(authors_imported / "fine.pt")["model"])
    classifier = build_classifier(EVALUATOR, 5)
    classifier.load_state_dict(checkpoint.load(authors_imported / "evaluator.pt")["model"])
    evaluator = lowcam.Evaluator(classifier).eval()
    with torch.no_grad():
        generator_logits, logits, att, class_maps = authors_files.coarse(images)
        out = coarse(images)
        assert torch.equal(out.generator.activation, att)
        assert torch.equal(out.generator.class_maps, class_maps)
        torch.testing.assert_close(out.generator.logits, generator_logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)
        fine_att, fine_logits = authors_files.fine(images)
        assert torch.equal(fine(images).activation, fine_att)
        torch.testing.assert_close(evaluator(images), fine_logits, rtol=1e-5, atol=1e-6)
        # lowcam's generator built directly with the fine file's tensors gives the same map
        generator = lowcam.LowLevelActivationGenerator(64, 5, base_width=WIDTH).eval()
        generator.load_state_dict(
            {
                expected_name(k).removeprefix("generator."): v
                for k, v in authors_files.fine_state.items()
                if k.startswith(("att_", "bn_att3"))
            }
            | {"class_head.weight": authors_files.coarse_state["att_conv2.weight"]}
        )
        torch.testing.assert_close(generator(fine.stem(images)).activation, fine_att, rtol=0, atol=1e-6)
        assert not torch.allclose(fine_att, att)  # the two files really hold different maps


def test_dataparallel_prefix_and_missing_batch_counters_are_accepted(
    authors_files: AuthorsFiles, tmp_path: Path
) -> None:
    state = {
        f"module.{k}": v
        for k, v in authors_files.coarse_state.items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "coarse_dp.pth"
    torch.save({"state_dict": state}, path)
    argv = authors_files.argv(tmp_path / "out", fine=False)
    argv[argv.index("--coarse") + 1] = str(path)
    assert import_original.main(argv) == 0
    coarse = checkpoint.load(tmp_path / "out" / "coarse.pt")
    assert torch.equal(
        coarse["model"]["generator.up2.block.0.weight"],
        authors_files.coarse_state["att_layer4.up_2.conv.UConv.0.weight"],
    )
    assert int(coarse["model"]["stem.1.num_batches_tracked"]) == 0
    assert "bn1.num_batches_tracked" in coarse["imported_from"]["filled"]
    assert not (tmp_path / "out" / "fine.pt").exists()


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_pipeline_evaluates_and_refines_the_imported_models(tmp_path: Path) -> None:
    """``--stage eval`` reads the imported checkpoints (both maps are evaluated on every test image), and
    ``--stage fine`` trains stage 2 from the imported coarse model, leaving the frozen stem as it was."""
    data = tmp_path / "data"
    lowcam.data.write_shapes(
        data,
        lowcam.data.ShapesSpec(
            classes=3, train_per_class=4, test_per_class=3, min_size=36, max_size=48, seed=1
        ),
    )
    authors_files = AuthorsFiles(tmp_path, num_classes=3)
    out = tmp_path / "run"
    assert import_original.main(authors_files.argv(out)) == 0
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


def test_config_used_for_the_payload_is_the_pipelines(
    authors_files: AuthorsFiles, authors_imported: Path
) -> None:
    cfg = load_config(SYNTHETIC, {"output_dir": str(authors_imported)})
    assert checkpoint.load(authors_imported / "coarse.pt")["epochs"] == cfg.coarse.epochs
