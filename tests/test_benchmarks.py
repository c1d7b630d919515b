"""The benchmark scripts run (tiny CPU configurations) and the GPU script fits one 10-minute device call.

The GPU machine is lent for 15 minutes at most, so a script that fails on an argument or a renamed function
there wastes the only chance to measure; these smoke runs catch that here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import lowcam.data

ROOT = Path(__file__).resolve().parent.parent
GPU_SCRIPT = ROOT / "benchmarks" / "run_gpu.sh"


def _run(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_gpu_script_fits_one_device_call() -> None:
    text = GPU_SCRIPT.read_text()
    limits = [int(t) for t in re.findall(r"\btimeout (\d+)", text)]
    assert len(limits) >= 7 and sum(limits) <= 560  # per-call limit 600 s, with room for the set-up
    subprocess.run(["bash", "-n", str(GPU_SCRIPT)], check=True)
    for script in set(re.findall(r"(benchmarks/\w+\.py|tests/\w+\.py)", text)):
        assert (ROOT / script).exists(), script


def test_bench_ops_smoke(tmp_path: Path) -> None:
    out = tmp_path / "ops"
    args = ["--device", "cpu", "--batches", "2", "--sizes", "8", "--classes", "30", "--repeats", "1"]
    args += ["--warmup", "0", "--min-time", "0", "--impls", "loop", "torch", "--out", str(out)]
    _run([str(ROOT / "benchmarks" / "bench_ops.py"), *args], tmp_path)
    rows = json.loads(out.with_suffix(".json").read_text())["results"]
    assert {(r["component"], r["impl"]) for r in rows} == {
        (c, i) for c in ("entropy", "area", "erasing") for i in ("loop", "torch")
    }
    # --resume keeps those rows and measures nothing new
    _run([str(ROOT / "benchmarks" / "bench_ops.py"), *args, "--resume"], tmp_path)
    assert len(json.loads(out.with_suffix(".json").read_text())["results"]) == len(rows)


def test_bench_metrics_smoke(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    args = ["--device", "cpu", "--n", "3", "--quick", "--protocols", "maxboxacc_v2,ornet", "--maps", "smooth"]
    _run([str(ROOT / "benchmarks" / "bench_metrics.py"), *args, "--out", str(tmp_path)], tmp_path)
    rows = json.loads((tmp_path / "metrics_cpu.json").read_text())["rows"]
    assert [r["protocol"] for r in rows] == ["maxboxacc_v2", "ornet"]
    assert all(r["counts_equal"] for r in rows)


def test_bench_step_smoke(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    out = tmp_path / "step"
    args = ["--device", "cpu", "--batches", "2", "--image-size", "32", "--classes", "30", "--repeats", "1"]
    args += ["--warmup", "0", "--precisions", "fp32", "--out", str(out)]
    _run([str(ROOT / "benchmarks" / "bench_step.py"), *args], tmp_path)
    rows = json.loads(out.with_suffix(".json").read_text())["results"]
    assert {r["pieces"] for r in rows} == {"loop", "lowcam"}


def _bench_localization() -> Any:
    sys.path.insert(0, str(ROOT / "examples"))
    import benchmarks.bench_localization as bench

    return bench


def test_localization_validation_split_holds_out_training_images_only(tmp_path: Path) -> None:
    """The validation split is cut from the training images, per class; no test image enters it."""
    pytest.importorskip("PIL")
    _bench_localization()  # puts examples/ on the path
    from benchmarks._runs import write_validation_split
    from lowcam.data import ShapesSpec, read_cub, write_shapes

    source = tmp_path / "data"
    write_shapes(source, ShapesSpec(classes=3, train_per_class=8, test_per_class=2, seed=5))
    train_count, val_count = write_validation_split(source, tmp_path / "val", fraction=0.25)
    assert (train_count, val_count) == (18, 6)
    full_train = {s.path.name for s in read_cub(source, "train").samples}
    full_test = {s.path.name for s in read_cub(source, "test").samples}
    val_train = read_cub(tmp_path / "val", "train").samples
    val_test = read_cub(tmp_path / "val", "test").samples
    names_train, names_test = {s.path.name for s in val_train}, {s.path.name for s in val_test}
    assert names_train | names_test == full_train and not names_train & names_test
    assert not (names_train | names_test) & full_test
    assert sorted(s.label for s in val_test) == [0, 0, 1, 1, 2, 2]


def test_localization_summary_means_stds_and_targets() -> None:
    bench = _bench_localization()

    def rows(gt: list[float], v2: list[float]) -> list[dict[str, float]]:
        return [{"gt_known": a, "maxboxacc_v2": b} for a, b in zip(gt, v2)]

    runs = {
        "a": {"ornet": rows([60, 70, 80], [50, 50, 50]), "cam": rows([40, 40, 40], [30, 30, 30])},
        "b": {"ornet": rows([30, 30, 30], [20, 20, 20]), "cam": rows([35, 35, 35], [20, 20, 20])},
    }
    summary = bench.summarise(runs)
    assert summary["variants"]["a"]["ornet"]["gt_known"] == {"mean": 70.0, "std": 10.0}
    assert summary["overall"]["ornet"]["gt_known"]["mean"] == 50.0
    target = summary["targets"]["ornet_vs_cam_gt_known"]
    assert target["mean_gap"] == 12.5 and target["per_variant_gap"] == {"a": 30.0, "b": -5.0}
    assert target["met"] is False  # behind on variant b


def test_plugin_pretrained_target_table_and_readme_rows() -> None:
    """``bench_plugin_pretrained.py``: the gain is the mean of the per-run differences, the target needs
    +5 on both metrics, and the tables show every arm with mean ± sample std."""
    sys.path.insert(0, str(ROOT / "examples"))
    from benchmarks import bench_plugin_pretrained as bench

    def run(variant: str, seed: int, plain: float, lowcam: float) -> dict[str, Any]:
        row = lambda v: {"gt_known": v, "maxboxacc_v2": v + 10, "map_size": [16, 16]}  # noqa: E731
        return {"variant": variant, "seed": seed, "plain": row(plain), "lowcam": row(lowcam),
                "center_gaussian": {"gt_known": 0.0, "maxboxacc_v2": 30.0}}  # fmt: skip

    runs = [run("base", 0, 20, 30), run("base", 1, 30, 34), run("small-birds", 0, 10, 12)]
    target = bench.target(runs)
    assert target == {"maxboxacc_v2": pytest.approx(16 / 3), "gt_known": pytest.approx(16 / 3), "met": True}
    assert bench.target(runs, margin=6)["met"] is False
    assert bench.target(runs[1:])["met"] is False  # +4 and +2: below 5
    payload = {
        "environment": {"device": "CPU", "torch": "t", "python": "p", "commit": "abc", "date": "d",
                        "jobs": 2, "threads_per_run": 1},
        "runs": runs, "variants": ["base", "small-birds"], "seeds": [0, 1], "training_seconds": 60,
        "wall_seconds": 60, "variant_notes": {"base": "b", "small-birds": "s"}, "plugin_args": ["--crop", "128"],
        "validation": {"variant": "base", "seed": 0, "chosen": bench.GRID[0], "candidates": [
            {"overrides": bench.GRID[0], "plain": runs[0]["plain"], "lowcam": runs[0]["lowcam"]}]},
        "target": target, "command": "python benchmarks/bench_plugin_pretrained.py", "quick": False,
    }  # fmt: skip
    text = bench.markdown(payload)
    assert "| base | MaxBoxAccV2 | 35.0 ± 7.1 | 42.0 ± 2.8 | 30.0 ± 0.0 | 7.0 ± 4.2 |" in text
    assert "| all runs | MaxBoxAccV2 | 30.0 ± 10.0 | 35.3 ± 11.7 | 30.0 ± 0.0 | 5.3 ± 4.2 |" in text
    assert "— met." in text and "Maps 16×16" in text
    assert "not a result" not in text and "not a result" in bench.markdown({**payload, "quick": True})
    table = bench.readme_table(payload)
    assert table.startswith("| map (16×16) | MaxBoxAccV2 | GT-known Loc |")
    assert "| CAM + lowcam (plug-in) | 35.3 ± 11.7 | 25.3 ± 11.7 |" in table


def test_pretrained_fine_lr_must_be_the_validated_one(tmp_path: Path) -> None:
    """``bench_pretrained.py --fine-lr`` skips the validation only with the rate ``pretrained.json``'s
    validation chose; anything else is an argparse error before any data is written."""
    sys.path.insert(0, str(ROOT / "examples"))
    from benchmarks import bench_pretrained as bench

    work = tmp_path / "work"
    common = ["--work", str(work), "--out", str(tmp_path), "--variants", "body-cue"]
    with pytest.raises(SystemExit) as missing:
        bench.main([*common, "--fine-lr", "0.01"])
    assert missing.value.code == 2
    (tmp_path / "pretrained.json").write_text(
        json.dumps({"validation": {"variant": "base", "chosen": {"fine.optim.lr": "0.01"}},
                    "environment": {"commit": "abc"}})
    )  # fmt: skip
    for wrong in ("0.5", "abc"):
        with pytest.raises(SystemExit) as error:
            bench.main([*common, "--fine-lr", wrong])
        assert error.value.code == 2
    assert not work.exists()
    assert bench.DEFAULT_VARIANTS == ("base", "classes-8", "small-birds", "waterbirds")
    from benchmarks import bench_plugin_pretrained as plugin  # the plug-in benchmark's default is the same

    assert plugin.build_parser().parse_args(["--work", str(work)]).variants == list(bench.DEFAULT_VARIANTS)


def test_map_border_statistics_find_a_frame() -> None:
    """``map_border.py``: a map whose highest values form a frame puts all its top pixels on the border,
    one with a central blob none; the border's share of an 8 × 8 map with a 2-pixel ring is 48/64."""
    from benchmarks.map_border import border_statistics

    frame = torch.zeros(2, 8, 8)
    frame[:, 0, :] = 1.0
    blob = torch.zeros(2, 8, 8)
    blob[:, 3:5, 3:5] = 1.0
    blob[1] += 0.5  # a brighter image: its mean moves, its spread does not
    on_frame = border_statistics(frame, ring=2, top=8)
    assert on_frame["top_on_border"] == 1.0 and on_frame["border_area"] == 48 / 64
    assert on_frame["border_mean"] > on_frame["interior_mean"] == 0.0
    inside = border_statistics(blob, ring=2, top=4)
    assert inside["top_on_border"] == 0.0 and inside["border_mean"] < inside["interior_mean"]
    assert inside["std_within"] == pytest.approx(blob[0].flatten().std().item())
    assert inside["std_between"] == pytest.approx(torch.tensor([4 / 64, 4 / 64 + 0.5]).std().item())


def test_map_parts_count_top_pixels_on_the_head_the_body_and_the_background() -> None:
    """``map_border.py`` on the birds: box masks take the map pixels whose centres are in the box; a map that
    peaks on the head puts its top pixels there, one that peaks outside the bird on the background."""
    from benchmarks.map_border import box_masks, part_statistics

    # 8 × 8 map, 4 image pixels a map pixel: the bird covers map pixels 1..5, its head pixels 1..2
    bird = box_masks(torch.tensor([[4.0, 4.0, 24.0, 24.0]] * 2), 8, 4.0)
    head = box_masks(torch.tensor([[4.0, 4.0, 12.0, 12.0]] * 2), 8, 4.0)
    assert bird[0].sum() == 25 and head[0].sum() == 4 and bool((head <= bird).all())
    maps = torch.zeros(2, 8, 8)
    maps[0, 1:3, 1:3] = 1.0  # on the head
    maps[1, 7, 4:8] = 1.0  # below the bird
    stats = part_statistics(maps[:1], head[:1], bird[:1], top=4)
    assert (stats["top_head"], stats["top_body"], stats["top_background"]) == (1.0, 0.0, 0.0)
    assert stats["head_area"] == 4 / 64 and stats["body_area"] == 21 / 64
    outside = part_statistics(maps[1:], head[1:], bird[1:], top=4)
    assert outside["top_background"] == 1.0


def test_validation_split_of_the_birds_keeps_their_head_boxes(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    _bench_localization()  # puts examples/ on the path
    from benchmarks._runs import write_validation_split
    from lowcam.data import BirdSpec, write_birds

    write_birds(tmp_path / "data", BirdSpec(classes=2, train_per_class=4, test_per_class=1, size=48, seed=3))
    write_validation_split(tmp_path / "data", tmp_path / "val", fraction=0.25)
    heads = dict(
        line.split(" ", 1) for line in (tmp_path / "data" / "head_boxes.txt").read_text().splitlines()
    )
    kept = [line.split(" ", 1) for line in (tmp_path / "val" / "head_boxes.txt").read_text().splitlines()]
    split = (tmp_path / "val" / "train_test_split.txt").read_text().split()[::2]
    assert [i for i, _ in kept] == split and all(heads[i] == box for i, box in kept)


def test_map_border_main_reports_every_statistic(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``map_border.py`` end to end on a pipeline run: the border line, the generator in both modes and,
    with ``head_boxes.txt`` (here each object's own box), the parts of ``p`` and ``f_y``."""
    import shutil

    from benchmarks.map_border import main

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    shutil.copy(data / "bounding_boxes.txt", data / "head_boxes.txt")
    weights = (trained / "coarse.pt").read_bytes()
    assert main(["--run", str(trained), "--data", str(data), "--images", "4", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "of each map's top-3 pixels in the 2-pixel border" in out and "(4 images)" in out
    assert "generator in eval mode (running statistics): accuracy" in out
    assert "generator in train mode (batch statistics): accuracy" in out
    for name in ("p", "f_y"):
        assert f"{name}: top-3 pixels" in out
    assert "0.00 on the rest of the bird" in out  # the head box is the whole object here
    assert (trained / "coarse.pt").read_bytes() == weights


def test_stage1_trials_table_has_a_row_per_setting_with_means_over_seeds() -> None:
    from benchmarks.stage1_trials import markdown

    def run(setting: str, seed: int, v2: float, acc: float) -> dict[str, Any]:
        parts = {
            "top_head": 0.1,
            "top_body": 0.3,
            "top_background": 0.6,
            "head_area": 0.05,
            "body_area": 0.25,
        }
        row = {"maxboxacc_v2": v2, "gt_known": v2 / 2}
        generator = {"accuracy_eval": acc, "accuracy_train": 0.8, "p": parts, "f_y": parts}
        return {"setting": setting, "seed": seed, "stage1": row, "stage2": row, "generator": generator}

    payload = {
        "environment": {"device": "CPU", "torch": "2", "commit": "abc", "date": "today"},
        "seeds": [0, 1],
        "runs": [
            run("reference", 0, 10.0, 0.25),
            run("reference", 1, 20.0, 0.25),
            run("coarse", 0, 30.0, 0.8),
        ],
        "command": "python benchmarks/stage1_trials.py --work W",
    }
    text = markdown(payload)
    assert (
        "| `reference` | 15.0 ± 7.1 | 7.5 ± 3.5 | 15.0 ± 7.1 | 7.5 ± 3.5 | 0.25 ± 0.00 | 0.80 ± 0.00 |"
        in text
    )
    assert (
        "| `coarse` | 30.0 ± 0.0 | 15.0 ± 0.0 | 30.0 ± 0.0 | 15.0 ± 0.0 | 0.80 ± 0.00 | 0.80 ± 0.00 | 10 ± 0 / 30 ± 0 / 60 ± 0 |"
        in text
    )
    assert "`both`" not in text.split("\n\n")[2]  # no runs, no row
    assert text.endswith("`python benchmarks/stage1_trials.py --work W` wrote this file.")


def test_stage1_trials_pin_the_stage_1_length_they_measured(tmp_path: Path, monkeypatch: Any) -> None:
    """The trials ran with a 15-epoch stage 1; the shipped config may change its length since, so the
    command pins it (re-running ``stage1_trials.py`` must reproduce its committed results)."""
    from benchmarks import stage1_trials

    seen: list[list[str]] = []

    def fake_run(args: list[str], log: Path, threads: int) -> float:
        seen.append(args)
        raise RuntimeError("stop here")

    monkeypatch.setattr(stage1_trials, "run_script", fake_run)
    with pytest.raises(RuntimeError, match="stop here"):
        stage1_trials.trial(tmp_path / "val", tmp_path / "run", "coarse", 1, 1)
    (args,) = seen
    assert args[args.index("--coarse.epochs") + 1] == "15"
    assert args[args.index("--coarse.seed") + 1] == "1" and args[-2:] == ["--coarse.recalibrate_bn", "true"]


def test_stage2_objective_scores_fixed_maps(trained: Path, tmp_path: Path) -> None:
    """``stage2_objective.py``: the birds' silhouettes are redrawn from their seeds (a wrong spec is refused),
    every candidate and the run's own maps are scored, and the objective is the sum of its terms."""
    from benchmarks import stage2_objective as s2

    spec = lowcam.data.BirdSpec(classes=3, train_per_class=4, test_per_class=1, size=48, seed=5)
    lowcam.data.write_birds(tmp_path / "birds", spec)
    data = tmp_path / "birds"
    paths = [data / "images" / line.split()[1] for line in (data / "images.txt").read_text().splitlines()[:3]]
    bird, head = s2.bird_masks(data, spec, paths)
    assert bird.shape == (3, 48, 48) and bool((head <= bird).all()) and 0 < head.sum() < bird.sum()
    with pytest.raises(ValueError, match="spec: image 1 redraws with box"):
        s2.bird_masks(
            data, lowcam.data.BirdSpec(classes=3, train_per_class=4, test_per_class=1, size=48, seed=6), paths
        )

    m = s2.measure(trained, data, spec, images=6, draws=2, masked_epochs=1)
    maps = m["maps"]
    assert list(maps) == [*s2.CANDIDATES, "stage 1 map", "stage 2 map"] and m["images"] == 6
    # the probe's table has the same maps; scoring again without it gives the same numbers (seeded draws)
    assert list(m["maps_masked"]) == list(maps) and m["masked_epochs"] == 1
    assert s2.measure(trained, data, spec, images=6, draws=2)["maps"] == maps
    w_area, w_entropy = m["weights"]
    for s in maps.values():
        assert s["objective"] == pytest.approx(s["ce_erased"] + w_area * s["area"] + w_entropy * s["entropy"])
        assert 0 <= s["acc"] <= 1 and 0 <= s["acc_erased"] <= 1
    assert maps["whole image"]["area"] == 1.0 and abs(maps["whole image"]["entropy"]) < 1e-5
    assert maps["bird"]["area"] + maps["background"]["area"] == pytest.approx(1.0)
    assert maps["head"]["area"] < maps["bird"]["area"] <= maps["bird box"]["area"]

    from _pipeline import copy_run
    from ornet import checkpoint

    unfinished = copy_run(trained, tmp_path / "unfinished")
    checkpoint.atomic_save({"model": {}, "epoch": 2, "complete": False}, unfinished / "evaluator.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"evaluator.pt is incomplete \(epoch 2\)"):
        s2.measure(unfinished, data, spec, images=6)  # a stage still training is refused, not measured

    def fixed(ce: float, area: float) -> dict[str, float]:
        return {"objective": ce + 0.5 * area, "area_weight": 0.5, "area": area}

    # the bird beats the whole image once w > (2 - 1) / (1 - 0.2) = 1.25 and the head while w < (3 - 2) / (0.2 - 0.1) = 10
    toy = {"whole image": fixed(1.0, 1.0), "bird": fixed(2.0, 0.2), "head": fixed(3.0, 0.1)}
    low, high = s2.bird_window(toy)  # type: ignore[misc]
    assert low == pytest.approx(1.25) and high == pytest.approx(10.0)
    assert s2.bird_window({**toy, "head": fixed(1.5, 0.1)}) is None  # the head is better and smaller
    assert s2.bird_window({**toy, "stage 2 map": fixed(0.0, 0.2)}) == (
        low,
        high,
    )  # learned maps are no rivals
    assert s2.bird_window({"whole image": fixed(3.0, 1.0), "bird": fixed(2.0, 0.2)}) == (0.0, float("inf"))
    same_area = {
        "bird": fixed(2.0, 0.2),
        "bird box": fixed(1.9, 0.2),
    }  # equal areas: no weight separates them
    assert s2.bird_window(same_area) is None and s2.bird_window(same_area, "bird box") == (0.0, float("inf"))
    run = {"variant": "base", "seed": 0, **m}
    payload = {
        "environment": {"device": "CPU", "torch": "2", "commit": "abc", "date": "today"},
        "command": "python benchmarks/stage2_objective.py --work W",
        "work": "W",
        "runs": [run, run],
    }
    text = s2.markdown(payload)
    assert "| whole image | " in text and "| stage 2 map | " in text
    best = min(maps, key=lambda n: maps[n]["objective"])
    assert f"- `base`: lowest objective {best} (2 of 2); an area weight at which" in text
    assert "would beat every other fixed map in " in text and " of 2 runs" in text
    assert "With the evaluator fine-tuned for 1 epochs on masked training images" in text


def test_stage2_objective_masks_follow_the_evaluation_transform() -> None:
    """``_to_map`` resizes and centre-crops a mask as the evaluation transform does an image (torchvision's
    rounded offset: resize 35, crop 32 → 2, not 35 // 2's 1), so a map lies on its object."""
    import types

    from PIL import Image

    sys.path.insert(0, str(ROOT / "examples"))
    from benchmarks import stage2_objective as s2
    from lowcam.data import ornet_test_transform

    mask = torch.zeros(1, 30, 30, dtype=torch.bool)
    mask[0, 5:12, 17:26] = True
    cfg = types.SimpleNamespace(data=types.SimpleNamespace(resize=35, crop=32))
    ours = s2._to_map(mask, cfg, 32)[0, 0] > 0.5  # type: ignore[arg-type]
    picture = Image.fromarray((mask[0].numpy() * 255).astype("uint8")).convert("RGB")
    theirs, _ = ornet_test_transform(35, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(picture, torch.zeros(0, 4))
    reference = theirs[0] > 0.5
    assert (ours & reference).sum() / (ours | reference).sum() > 0.9
    for dim in (0, 1):  # the same place, to a pixel
        assert torch.nonzero(ours)[:, dim].float().mean() == pytest.approx(
            torch.nonzero(reference)[:, dim].float().mean(), abs=0.5
        )


def test_stage2_objective_probe_leaves_the_classifier_alone() -> None:
    """``masked_evaluator`` fine-tunes a copy (the given classifier's weights and mode do not change) and
    is seeded (two calls give the same probe) without moving the caller's random state."""
    import types

    from benchmarks import stage2_objective as s2

    torch.manual_seed(0)
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)
    ).eval()
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    images, labels = torch.randn(10, 3, 16, 16), torch.randint(0, 3, (10,))
    cfg = types.SimpleNamespace(quirks=types.SimpleNamespace(upsample="nearest", follow_parent_mode=False))
    state = torch.random.get_rng_state()
    first = s2.masked_evaluator(classifier, images, labels, cfg, 4, epochs=2)  # type: ignore[arg-type]
    assert torch.equal(torch.random.get_rng_state(), state)
    second = s2.masked_evaluator(classifier, images, labels, cfg, 4, epochs=2)  # type: ignore[arg-type]
    assert (
        all(torch.equal(v, before[k]) for k, v in classifier.state_dict().items()) and not classifier.training
    )
    weights = [p for p in first.classifier.parameters()]
    assert not torch.equal(weights[0], before["0.weight"])  # it did train
    assert all(torch.equal(a, b) for a, b in zip(weights, second.classifier.parameters()))
