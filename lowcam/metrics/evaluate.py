"""``lowcam-eval``: clovaai/wsolevaluation's offline evaluation (``evaluation.py``), exact and batched.

A drop-in for ``python evaluation.py ...`` of the reference code: the same flags, defaults, metadata layout
(``<metadata_root>/<dataset_name>/<split>/``), score maps (``<scoremap_root>/<image_id>.npy``), masks
(``<mask_root>/OpenImages/<mask path>``) and numbers. docs/evaluate.md describes it in full.

Usage::

    lowcam-eval --scoremap_root train_log/scoremaps --metadata_root metadata --dataset_name CUB \\
        --split test --multi_contour_eval --multi_iou_eval --cam_curve_interval 0.001 --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from lowcam import metrics
from lowcam.metrics._scoremap_files import (
    _SCOREMAP_SIZE,
    _check_scoremap_file,
    _check_scoremap_folder,
    _load_scoremap,
)
from lowcam.metrics.frames import wsoleval_gt_boxes
from lowcam.metrics.metadata import DataError, WSOLMetadata, read_mask, read_wsol_metadata

__all__ = ["main"]

_DATASETS = ("CUB", "ILSVRC", "OpenImages")
_T = TypeVar("_T")
#: Above this many thresholds, the box metrics keep one threshold per set of equal cuts (same numbers).
_MAX_DENSE_THRESHOLDS = 2**16
#: The most PxAP histogram bins (``--cam_curve_interval`` of at least about 1e-6).
_MAX_PXAP_THRESHOLDS = 2**20


def _str2bool(value: str) -> bool:
    """The reference's ``str2bool``: yes/true/t/y/1 and no/false/f/n/0, any case."""
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {value!r}")


def _add_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """The reference's boolean option ``name``: off by default, on alone or with a value :func:`_str2bool`
    reads."""
    parser.add_argument(name, type=_str2bool, nargs="?", const=True, default=False, help=help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowcam-eval",
        description=(
            "Evaluate saved score maps as clovaai/wsolevaluation's evaluation.py does (same flags, same "
            "numbers): MaxBoxAcc / MaxBoxAccV2 for CUB and ILSVRC, PxAP for OpenImages."
        ),
        epilog=(
            "MaxBoxAccV2 is --multi_contour_eval --multi_iou_eval (IoU 30, 50, 70). The reference paper's "
            "numbers use --cam_curve_interval 0.001; this script's default, like the reference script's, is "
            "0.01. Score maps must be 224x224 float arrays in [0, 1] (or pass --prepare_scoremaps)."
        ),
    )
    parser.add_argument(
        "--scoremap_root", default="train_log/scoremaps/", help="folder of <image_id>.npy score maps"
    )
    parser.add_argument(
        "--metadata_root", default="metadata/", help="folder holding <dataset_name>/<split>/*.txt"
    )
    parser.add_argument(
        "--mask_root", default="dataset/", help="masks are read from <mask_root>/OpenImages/<mask path>"
    )
    parser.add_argument("--dataset_name", required=True, choices=_DATASETS)
    parser.add_argument("--split", required=True, help="the metadata split folder, e.g. val or test")
    parser.add_argument(
        "--cam_curve_interval",
        type=float,
        default=0.01,
        help="score-map threshold step: thresholds np.arange(0, 1, step) (default 0.01, the reference "
        "script's; its training code and papers use 0.001)",
    )
    _add_flag(
        parser,
        "--multi_contour_eval",
        "boxes of every contour (MaxBoxAccV2) instead of the largest contour's (MaxBoxAcc)",
    )
    _add_flag(
        parser,
        "--multi_iou_eval",
        "report the mean over --iou_threshold_list instead of the value at IoU 50",
    )
    parser.add_argument(
        "--iou_threshold_list",
        nargs="+",
        type=int,
        default=[30, 50, 70],
        help="IoU thresholds in percent (default 30 50 70)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument(
        "--prepare_scoremaps",
        action="store_true",
        help="lowcam addition: accept raw CAMs of any size; resize them bicubically in float64 to 224x224 "
        "and min-max normalise them (the reference's inference path) before evaluating",
    )
    parser.add_argument(
        "--keep_boxes_outside_image",
        action="store_true",
        help="lowcam addition: keep a GT box that reaches beyond its image's size (the reference keeps it; "
        "lowcam refuses it by default, naming the localization.txt line)",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="maps evaluated together (memory only)")
    parser.add_argument("--device", default="cpu", help="torch device for the counting, e.g. cpu or cuda")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar on stderr")
    return parser


# -------------------------------------------------------------------------------------------- reading


def _box_thresholds(interval: float, count: int) -> Tensor:
    """The thresholds ``np.arange(0, 1, interval)`` for the box metrics, or (above
    :data:`_MAX_DENSE_THRESHOLDS` of them) only those that start a run of thresholds giving the same cuts.

    The box metrics use a threshold τ only through the cut ``int(τ · m)`` of an 8-bit map with maximum
    ``m ∈ 1..255``; it changes where ``τ_i = i · interval`` first reaches ``j / m`` (``1 ≤ j < m``), at most
    32,385 places. The counts at every omitted threshold equal those at the kept one before it, and the
    chosen threshold (the first best) is always a kept one: the numbers are the same, in bounded memory and
    time for any interval.
    """
    if count <= _MAX_DENSE_THRESHOLDS:
        return metrics.wsoleval_thresholds(interval)
    starts = {0}
    for m in range(2, 256):
        for j in range(1, m):
            i = max(0, int(j / (m * interval)) - 2)
            while float(i) * interval * m < j:  # int(fl(fl(i · interval) · m)) < j
                i += 1
            while i > 0 and float(i - 1) * interval * m >= j:
                i -= 1
            if i < count:
                starts.add(i)
    return torch.tensor(sorted(starts), dtype=torch.float64) * interval


def _load_masks(mask_root: Path, image_id: str, meta: WSOLMetadata) -> tuple[Tensor, Tensor]:
    """``(N, 224, 224)`` instance masks and the ``(224, 224)`` ignore mask (zeros if none), grey levels."""
    loc_path = meta.directory / "localization.txt"

    def load(path: str, line: int, what: str) -> Tensor:
        file = mask_root / path
        if not file.is_file():
            raise DataError(loc_path, line, f"{what} of image {image_id!r} not found: {file}")
        return read_mask(file, size=_SCOREMAP_SIZE)

    masks = torch.stack([load(ref.path, ref.line, "mask") for ref in meta.masks[image_id]])
    ref = meta.ignore.get(image_id)
    ignore = load(ref.path, ref.line, "ignore mask") if ref is not None else torch.zeros_like(masks[0])
    return masks, ignore


def _progress(items: Sequence[_T], enabled: bool) -> Iterator[_T]:
    """Iterate with a progress bar on stderr: tqdm's when it is installed, else a line every 10 %."""
    if not enabled:
        yield from items
        return
    try:
        tqdm: Any = importlib.import_module("tqdm").tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, desc="lowcam-eval", unit="map", file=sys.stderr, leave=False)
        return
    total = len(items)
    step = max(1, math.ceil(total / 10))
    for i, item in enumerate(items, start=1):
        yield item
        if i % step == 0 or i == total:
            print(f"lowcam-eval: {i}/{total} score maps", file=sys.stderr, flush=True)


def _batches(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# -------------------------------------------------------------------------------------------- results


def _read_result(
    result: metrics.BoxAccuracyResult | metrics.PxAPResult, iou_percents: Sequence[int] | None
) -> dict[str, Any]:
    """Everything the script reads from a metric's ``compute()`` result, in one place.

    Returns ``{"n": images, "value": headline from the metric}`` and, for box metrics (``iou_percents``
    given, in the order the metric was built with), ``"acc"`` and ``"threshold"``: per IoU percent, the
    accuracy in percent at the best score-map threshold and that threshold.
    """
    out: dict[str, Any] = {"n": result.n, "value": result.value}
    if iou_percents is not None and isinstance(result, metrics.BoxAccuracyResult):
        flat = result.scalars()  # thresholds as grid values (0.287, not 0.28700000000000003)
        keys = {p: f"{p / 100:g}" for p in iou_percents}
        out["acc"] = {p: flat[f"acc@{keys[p]}"] for p in iou_percents}
        out["threshold"] = {p: flat[f"threshold@{keys[p]}"] for p in iou_percents}
    return out


def _box_metric_name(multi_contour: bool, multi_iou: bool, ious: Sequence[int]) -> str:
    if multi_contour and multi_iou and list(ious) == [30, 50, 70]:
        return "MaxBoxAccV2"
    if not multi_contour and not multi_iou:
        return "MaxBoxAcc"
    contours = "all contours" if multi_contour else "largest contour"
    how = "mean over IoU " + "/".join(map(str, ious)) if multi_iou else "IoU 50"
    return f"box accuracy ({contours}, {how})"


# ----------------------------------------------------------------------------------------------- main


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    interval = args.cam_curve_interval
    if not (0.0 < interval <= 1.0):
        raise ValueError(f"--cam_curve_interval must be in (0, 1], got {interval}")
    count = math.ceil(1.0 / interval)  # np.arange(0, 1, interval) has this many thresholds
    if count > 2**53:
        raise ValueError(
            f"--cam_curve_interval must be at least 2**-53 (about 1.1e-16), got {interval}: np.arange(0, 1, "
            f"{interval}) would have {count:.3g} thresholds, more than float64 can index"
        )
    if args.batch_size <= 0:
        raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
    ious: list[int] = list(args.iou_threshold_list)
    if any(not 0 <= p <= 100 for p in ious) or len(set(ious)) != len(ious):
        raise ValueError(f"--iou_threshold_list must be distinct integers in 0..100, got {ious}")
    masks = args.dataset_name == "OpenImages"
    if not masks and not args.multi_iou_eval and 50 not in ious:
        raise ValueError(
            f"--iou_threshold_list {ious} lacks 50, the IoU whose accuracy is reported without --multi_iou_eval"
        )
    device = torch.device(args.device)
    meta = read_wsol_metadata(
        Path(args.metadata_root) / args.dataset_name / args.split,
        localization="masks" if masks else "boxes",
        require_localization=True,
        require_labels=False,
        boxes_outside="keep" if args.keep_boxes_outside_image else "error",
    )
    if not meta.image_ids:
        raise DataError(meta.ids_path, None, "lists no image: nothing to evaluate")
    if masks and count > _MAX_PXAP_THRESHOLDS:
        raise ValueError(
            f"--cam_curve_interval {interval} gives {count} PxAP thresholds, more than the {_MAX_PXAP_THRESHOLDS} "
            "histogram bins accepted (an interval of at least 1e-6)"
        )
    thresholds = metrics.wsoleval_thresholds(interval) if masks else _box_thresholds(interval, count)
    scoremap_root = Path(args.scoremap_root)
    _check_scoremap_folder(scoremap_root, meta)
    for image_id in meta.image_ids:  # every map before any is evaluated: headers only
        _check_scoremap_file(scoremap_root, image_id, meta, args.prepare_scoremaps)
    mask_root = Path(args.mask_root) / "OpenImages"  # as the reference joins it
    metric: Any
    if masks:
        metric = metrics.PxAP(thresholds=thresholds)
    else:
        metric = metrics.MaxBoxAcc(
            2 if args.multi_contour_eval else 1,
            thresholds=thresholds,
            iou_thresholds=[p / 100 for p in ious],
            boxes_outside="keep" if args.keep_boxes_outside_image else "error",
        )
    ids = _progress(meta.image_ids, enabled=not args.no_progress)
    for batch in _batches(ids, args.batch_size):
        maps = torch.stack([_load_scoremap(scoremap_root, i, meta, args.prepare_scoremaps) for i in batch])
        if masks:
            loaded = [_load_masks(mask_root, i, meta) for i in batch]
            metric.update(maps.to(device), [m for m, _ in loaded], [g for _, g in loaded])
        else:
            gt = [wsoleval_gt_boxes(meta.boxes[i], meta.sizes[i], size=_SCOREMAP_SIZE) for i in batch]
            metric.update(maps.to(device), gt)
    summary = _read_result(metric.compute(), None if masks else ious)
    report: dict[str, Any] = {"dataset_name": args.dataset_name, "split": args.split, "n": summary["n"]}
    if masks:
        report.update(metric="PxAP", localization=summary["value"], pxap=summary["value"])
    else:
        accs = summary["acc"]
        headline = sum(accs.values()) / len(accs) if args.multi_iou_eval else accs[50]
        report.update(
            metric=_box_metric_name(args.multi_contour_eval, args.multi_iou_eval, ious), localization=headline
        )
        for p in ious:
            report[f"acc@{p}"] = accs[p]
        for p in ious:
            report[f"threshold@{p}"] = summary["threshold"][p]
        report.update(
            multi_contour_eval=bool(args.multi_contour_eval),
            multi_iou_eval=bool(args.multi_iou_eval),
            iou_threshold_list=ious,
        )
    report["cam_curve_interval"] = interval
    return report


def _print_text(report: dict[str, Any]) -> None:
    split = report["split"]
    if report["metric"] == "PxAP":
        print(f"Mask AUC on split {split}: {report['pxap']}")
    else:
        contours = "all contours" if report["multi_contour_eval"] else "largest contour"
        for p in report["iou_threshold_list"]:
            print(
                f"box accuracy on split {split}, IoU {p}, {contours}: {report[f'acc@{p}']} "
                f"(score-map threshold {report[f'threshold@{p}']:.6g})"
            )
        print(f"{report['metric']} over {report['n']} images")
    print(f"localization: {report['localization']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lowcam-eval`` with ``argv`` (default: the command line); return the exit status.

    0 on success; 1 for a problem in the data (a missing or malformed score map, mask or metadata line;
    the message names the file and the line) or a bad option value; 2 for a usage error (argparse).
    """
    args = _parser().parse_args(argv)
    try:
        report = _evaluate(args)
    except (DataError, ValueError, RuntimeError, ImportError) as error:
        print(f"lowcam-eval: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        _print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
