"""lowcam.metrics.WSOLDataset, ScoremapWriter and evaluate_model on generated wsolevaluation-format folders:
a five-line evaluation of a tiny model equals lowcam-eval run on the score maps it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lowcam
from lowcam import metrics
from lowcam.metrics.evaluate import main as lowcam_eval
from lowcam.metrics.scoremap_writer import MANIFEST_NAME

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")


def _write_split(root: Path, name: str, n: int, *, seed: int = 0) -> dict[str, Any]:
    """``dataset/<name>/...`` PNG images (a bright square on noise) and ``metadata/<name>/test/*.txt``."""
    rng = np.random.default_rng(seed)
    meta = root / "metadata" / name / "test"
    meta.mkdir(parents=True)
    ids, labels, sizes, loc = [], [], [], []
    for i in range(n):
        image_id = f"{i % 2:03d}.class/img_{i}.png"
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x1, y1 = int(rng.integers(x0 + 8, w)), int(rng.integers(y0 + 8, h))
        pixels[y0:y1, x0:x1] = 230
        path = root / "dataset" / name / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        ids.append(image_id)
        labels.append(f"{image_id},{i % 3}")
        sizes.append(f"{image_id},{w},{h}")
        if name == "OpenImages":
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[y0:y1, x0:x1] = 255
            mask_id = f"masks/{i}.png"
            (root / "dataset" / "OpenImages" / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / "dataset" / "OpenImages" / mask_id)
            ignore = ""
            if i % 3 == 0:
                ign = np.zeros((h, w), dtype=np.uint8)
                ign[: h // 4] = 255
                ignore = f"masks/{i}_ignore.png"
                Image.fromarray(ign).save(root / "dataset" / "OpenImages" / ignore)
            loc.append(f"{image_id},{mask_id},{ignore}")
        else:
            loc.append(f"{image_id},{x0},{y0},{x1},{y1}")
            if i % 4 == 0:  # a second box
                loc.append(f"{image_id},0,0,{w // 3},{h // 3}")
    for file, lines in [
        ("image_ids", ids),
        ("class_labels", labels),
        ("image_sizes", sizes),
        ("localization", loc),
    ]:
        (meta / f"{file}.txt").write_text("".join(line + "\n" for line in lines))
    return {"ids": ids}


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 5, stride=4, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def _lowcam_eval(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    code = lowcam_eval([*argv, "--json", "--no_progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report: dict[str, Any] = json.loads(out.out)
    return report


@pytest.mark.parametrize("protocol", ["maxboxacc", "maxboxacc_v2"])
def test_five_line_evaluation_equals_lowcam_eval_on_the_written_scoremaps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    _write_split(tmp_path, "CUB", 11)
    model = _tiny_model()
    # the five lines
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    mapper = lowcam.ClassActivationMapper(model)
    with torch.no_grad():
        result = metrics.evaluate_model(
            mapper, dataset, protocol=protocol, batch_size=4, scoremap_root=tmp_path / "scoremaps"
        )
    assert isinstance(result, metrics.BoxAccuracyResult) and result.n == 11
    flags = ["--multi_contour_eval", "--multi_iou_eval"] if protocol == "maxboxacc_v2" else []
    report = _lowcam_eval(
        capsys,
        *("--scoremap_root", str(tmp_path / "scoremaps"), "--metadata_root", str(tmp_path / "metadata")),
        *("--dataset_name", "CUB", "--split", "test", "--cam_curve_interval", "0.001", *flags),
    )
    assert report["n"] == 11
    assert report["localization"] == pytest.approx(result.value, abs=1e-9)
    for delta, acc in result.acc.items():
        assert report[f"acc@{round(delta * 100)}"] == pytest.approx(acc, abs=1e-9)
        assert report[f"threshold@{round(delta * 100)}"] == pytest.approx(result.threshold[delta], abs=1e-12)
    manifest = json.loads((tmp_path / "scoremaps" / MANIFEST_NAME).read_text())
    assert manifest == {
        "format": "lowcam-scoremaps",
        "version": 1,
        "count": 11,
        "image_ids": sorted(dataset.image_ids),
    }
    # the maps written are those a hand-written loop gets: CAM of the label's class, prepared per image
    sample = dataset[3]
    with torch.no_grad():
        cam = lowcam.class_activation_maps(model, sample.image[None], torch.tensor([sample.label]))
    expected = metrics.prepare_scoremap(cam)[0].numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "scoremaps" / f"{sample.image_id}.npy"), expected)


def test_openimages_pxap_equals_lowcam_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_split(tmp_path, "OpenImages", 7, seed=1)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "OpenImages", "test")
    assert dataset.localization == "masks"
    sample = dataset[0]
    assert sample.masks is not None and sample.ignore is not None and sample.ignore.max() == 255
    with torch.no_grad():
        result = metrics.evaluate_model(
            lowcam.ClassActivationMapper(_tiny_model()),
            dataset,
            batch_size=3,
            scoremap_root=tmp_path / "maps",
        )
    assert isinstance(result, metrics.PxAPResult)
    report = _lowcam_eval(
        capsys,
        *("--scoremap_root", str(tmp_path / "maps"), "--metadata_root", str(tmp_path / "metadata")),
        *("--mask_root", str(tmp_path / "dataset"), "--dataset_name", "OpenImages", "--split", "test"),
        *("--cam_curve_interval", "0.001"),
    )
    assert report["pxap"] == pytest.approx(result.value, abs=1e-9)


def test_dataset_images_equal_torchvisions_evaluation_transform(tmp_path: Path) -> None:
    transforms = pytest.importorskip("torchvision.transforms", reason="torchvision is not installed")
    _write_split(tmp_path, "CUB", 3)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    reference = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize(metrics.dataset.IMAGENET_MEAN, metrics.dataset.IMAGENET_STD),
        ]
    )
    for i in range(3):
        sample = dataset[i]
        with Image.open(tmp_path / "dataset" / "CUB" / sample.image_id) as image:
            expected = reference(image.convert("RGB"))
        torch.testing.assert_close(sample.image, expected, rtol=0, atol=1e-6)
    raw = metrics.WSOLDataset(
        tmp_path / "dataset", tmp_path / "metadata", "CUB", "test", image_size=None, mean=None, std=None
    )
    sample = raw[1]
    assert sample.image.shape == (3, sample.size[1], sample.size[0]) and float(sample.image.max()) <= 1.0
    custom = metrics.WSOLDataset(
        tmp_path / "dataset", tmp_path / "metadata", "CUB", "test", transform=lambda im: im.size
    )
    assert custom[2].image == custom[2].size
    assert dataset[0].boxes.shape == (2, 4) and dataset[1].boxes.shape == (1, 4)  # img_0 has two boxes


def test_dataset_errors_name_the_file_and_line(tmp_path: Path) -> None:
    info = _write_split(tmp_path, "CUB", 3)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    (tmp_path / "dataset" / "CUB" / info["ids"][1]).unlink()
    with pytest.raises(metrics.DataError, match=r"image_ids.txt:2: image '001.class/img_1.png' not found"):
        dataset[1]
    (tmp_path / "dataset" / "CUB" / info["ids"][2]).write_bytes(b"not a png")
    with pytest.raises(metrics.DataError, match=r"img_2.png: unreadable image"):
        dataset[2]
    with pytest.raises(IndexError, match="index 3 out of range"):
        dataset[3]
    with pytest.raises(ValueError, match="image_size must be positive"):
        metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test", image_size=0)
    with pytest.raises(ValueError, match="mean must be three numbers"):
        metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test", mean=(0.5,))
    (tmp_path / "metadata" / "CUB" / "test" / "class_labels.txt").write_text("000.class/img_0.png,x\n")
    with pytest.raises(metrics.DataError, match=r"class_labels.txt:1: class label must be an integer"):
        metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")


def test_evaluate_model_checks_its_arguments_and_the_maps(tmp_path: Path) -> None:
    _write_split(tmp_path, "CUB", 2)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    with pytest.raises(ValueError, match="protocol 'pxap' does not fit the data set's boxes"):
        metrics.evaluate_model(lambda x, y: x, dataset, protocol="pxap")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        metrics.evaluate_model(lambda x, y: x, dataset, batch_size=0)
    with pytest.raises(
        ValueError, match=r"one map per image, \(B, h, w\) or \(B, 1, h, w\), got shape \(2, 3, 224"
    ):
        metrics.evaluate_model(lambda x, y: x, dataset)
    with pytest.raises(TypeError, match="dataset must be a lowcam.metrics.WSOLDataset"):
        metrics.evaluate_model(lambda x, y: x, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="map_fn must return a torch.Tensor"):
        metrics.evaluate_model(lambda x, y: x.numpy(), dataset)


def test_a_failing_evaluation_leaves_the_old_scoremaps_untouched(tmp_path: Path) -> None:
    _write_split(tmp_path, "CUB", 6)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    root = tmp_path / "scoremaps"
    metrics.write_scoremaps(root, {"old.png": torch.zeros(4, 4)})
    calls = []

    def map_fn(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return images.mean(1)

    with pytest.raises(RuntimeError, match="out of memory"):
        metrics.evaluate_model(map_fn, dataset, batch_size=3, scoremap_root=root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "metadata", "scoremaps"]
    assert sorted(p.name for p in root.iterdir()) == ["lowcam_scoremaps.json", "old.png.npy"]


# ------------------------------------------------------------------------------------------ the writer


def test_writer_follows_the_contract(tmp_path: Path) -> None:
    root = tmp_path / "out" / "scoremaps"
    maps = {"b/x.jpg": torch.rand(5, 6, dtype=torch.float64), "a.jpg": np.ones((1, 3, 3), dtype=np.float32)}
    with metrics.ScoremapWriter(root) as writer:
        for image_id, m in maps.items():
            writer.write(image_id, m)
        staging = writer.staging
        assert staging.name.startswith("scoremaps.partial-") and staging.parent == root.parent
        assert not root.exists(), "the root appears only when committed"
        assert not (staging / MANIFEST_NAME).exists(), "the manifest is written last"
    assert not staging.exists()
    np.testing.assert_array_equal(np.load(root / "b" / "x.jpg.npy"), maps["b/x.jpg"].numpy())
    loaded = np.load(root / "a.jpg.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (3, 3)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest == {
        "format": "lowcam-scoremaps",
        "version": 1,
        "count": 2,
        "image_ids": ["a.jpg", "b/x.jpg"],
    }
    assert not list(tmp_path.rglob("*.tmp"))
    # a second writer replaces the folder as a unit and removes the old one
    metrics.write_scoremaps(root, {"c.jpg": torch.zeros(2, 2)})
    assert sorted(p.name for p in root.iterdir()) == ["c.jpg.npy", MANIFEST_NAME]
    assert sorted(p.name for p in root.parent.iterdir()) == ["scoremaps"]


def test_writer_aborts_on_error_and_cleans_up_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "maps"
    metrics.write_scoremaps(root, {"keep.jpg": torch.ones(2, 2)})
    with pytest.raises(KeyboardInterrupt), metrics.ScoremapWriter(root) as writer:
        writer.write("new.jpg", torch.zeros(2, 2))
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]
    assert sorted(p.name for p in root.iterdir()) == ["keep.jpg.npy", MANIFEST_NAME]
    # siblings a crashed writer left behind are removed by the next one
    (tmp_path / "maps.partial-dead").mkdir()
    (tmp_path / "maps.partial-dead" / "x.npy.1234.tmp").write_bytes(b"")
    (tmp_path / "maps.old-dead").mkdir()
    metrics.write_scoremaps(root, {"z.jpg": torch.zeros(2, 2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


def test_writer_refuses_bad_input_and_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(FileExistsError, match=r"thesis.tex, which is not a score map"):
        metrics.ScoremapWriter(precious)
    assert (precious / "thesis.tex").exists()
    with metrics.ScoremapWriter(tmp_path / "maps") as writer:
        with pytest.raises(ValueError, match="relative path inside the score-map root"):
            writer.write("../escape.jpg", torch.zeros(2, 2))
        with pytest.raises(ValueError, match=r"must be a non-empty \(H, W\) or \(1, H, W\) map"):
            writer.write("a.jpg", torch.zeros(2, 2, 2))
        with pytest.raises(TypeError, match="must hold real numbers"):
            writer.write("a.jpg", torch.zeros(2, 2, dtype=torch.bool))
        writer.write("a.jpg", torch.zeros(2, 2))
        with pytest.raises(ValueError, match="written twice"):
            writer.write("a.jpg", torch.zeros(2, 2))
        with pytest.raises(ValueError, match="2 image ids for 1 score maps"):
            writer.write_batch(["b.jpg", "c.jpg"], torch.zeros(1, 2, 2))
    with pytest.raises(RuntimeError, match="already committed"):
        writer.write("d.jpg", torch.zeros(2, 2))


def test_import_lowcam_pulls_no_optional_package() -> None:
    """Pillow, matplotlib, torchvision, timm and OpenCV are imported on first use only."""
    import subprocess
    import sys

    code = (
        "import sys, lowcam, lowcam.metrics; "
        "print(sorted(m for m in ('PIL', 'matplotlib', 'torchvision', 'timm', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dataset_takes_numpy_and_torch_integer_indices(tmp_path: Path) -> None:
    _write_split(tmp_path, "CUB", 2)
    dataset = metrics.WSOLDataset(tmp_path / "dataset", tmp_path / "metadata", "CUB", "test")
    assert dataset[np.int64(1)].image_id == dataset[torch.tensor(1)].image_id == dataset[-1].image_id
    with pytest.raises(TypeError, match="index must be an int, got str"):
        dataset["0"]  # type: ignore[index]


def test_the_docs_five_line_evaluation_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/evaluate.md's evaluate_cam on a generated ILSVRC-format split equals lowcam-eval on its maps."""
    import re

    page = Path(__file__).resolve().parent.parent / "docs" / "evaluate.md"
    if not page.is_file():
        pytest.skip("docs/ is not shipped in the sdist")
    (block,) = [
        b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if "evaluate_cam" in b
    ]
    namespace: dict[str, Any] = {}
    exec(compile(block, str(page), "exec"), namespace)
    _write_split(tmp_path, "ILSVRC", 5, seed=2)
    result = namespace["evaluate_cam"](
        _tiny_model(), tmp_path / "dataset", tmp_path / "metadata", "ILSVRC", "test", tmp_path / "maps"
    )
    report = _lowcam_eval(
        capsys,
        *("--scoremap_root", str(tmp_path / "maps"), "--metadata_root", str(tmp_path / "metadata")),
        *("--dataset_name", "ILSVRC", "--split", "test", "--cam_curve_interval", "0.001"),
        *("--multi_contour_eval", "--multi_iou_eval"),
    )
    assert report["localization"] == pytest.approx(result.value, abs=1e-9)


@pytest.mark.parametrize("image_id", ["./a", "a//b", "x/./y", "a/", "."])
def test_writer_refuses_ids_that_are_not_normalised_paths(tmp_path: Path, image_id: str) -> None:
    # before: "a" and "./a" both passed and one map was lost; "a/" wrote root/a/.npy, which the next writer
    # then refused as a foreign file
    with (
        pytest.raises(ValueError, match="normalised relative path"),
        metrics.ScoremapWriter(tmp_path / "maps") as writer,
    ):
        writer.write(image_id, torch.zeros(2, 2))
    assert not (tmp_path / "maps").exists()
