"""What the box metrics share: the IoU-threshold checks, the count state and ``compute``, and
``BoxAccuracy``, the factory that picks :class:`~lowcam.metrics.LocalizationAccuracy` (protocol ``"ornet"``)
or :class:`~lowcam.metrics.MaxBoxAcc` (``"maxboxacc"``, ``"maxboxacc_v2"``) from a protocol name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import torch
from torch import Tensor

from lowcam.metrics.base import CountingMetric
from lowcam.metrics.results import BoxAccuracyResult

if TYPE_CHECKING:
    from lowcam.metrics.localization import LocalizationAccuracy
    from lowcam.metrics.maxboxacc import MaxBoxAcc

__all__ = ["BoxAccuracy", "BoxProtocol"]

BoxProtocol: TypeAlias = Literal["ornet", "maxboxacc", "maxboxacc_v2"]
_PROTOCOLS: tuple[BoxProtocol, ...] = ("ornet", "maxboxacc", "maxboxacc_v2")


def _grid_values(t: Tensor) -> list[float]:
    """The values of a floating tensor as the shortest decimals that its own dtype rounds to them: a float32
    ``0.3`` is ``0.3``, not ``0.30000001192092896``."""
    if t.dtype == torch.float64 or not t.is_floating_point():
        return [float(v) for v in t.tolist()]
    np_dtype = np.float16 if t.dtype == torch.float16 else np.float32
    return [float(str(np_dtype(v))) for v in t.to(torch.float32).tolist()]


def _check_iou_thresholds(value: object, default: tuple[float, ...]) -> tuple[float, ...]:
    """The IoU thresholds δ as a tuple of distinct floats in ``[0, 1]`` (a bare number is one δ)."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"iou_thresholds must hold real numbers, got a {value.dtype} tensor")
        value = _grid_values(value.detach().cpu().reshape(-1))
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(
            f"iou_thresholds must be a number or a sequence of numbers in [0, 1], got {type(value).__name__}"
        )
    if any(not isinstance(d, (int, float)) or isinstance(d, bool) for d in value):
        raise TypeError(f"iou_thresholds must hold numbers in [0, 1], got {list(value)!r}")
    deltas = tuple(float(d) for d in value)
    if not deltas or any(not 0.0 <= d <= 1.0 for d in deltas):
        raise ValueError(f"iou_thresholds must be a non-empty list of numbers in [0, 1], got {list(value)!r}")
    if len(set(deltas)) != len(deltas):
        raise ValueError(f"iou_thresholds must be distinct (one accuracy per δ), got {list(value)!r}")
    return deltas


def _empty_box_state(d: int, t: int) -> dict[str, Tensor]:
    """The counts of a box metric with ``d`` IoU and ``t`` map thresholds, all zero."""
    zeros = torch.zeros(d, t, dtype=torch.int64)
    return {
        "correct": zeros,  # (D, T) images whose box matches at (δ, τ)
        "top1": zeros.clone(),  # ... and whose top-1 class is right ("ornet" with logits)
        "top5": zeros.clone(),  # ... and whose class is in the top 5
        "n": torch.zeros((), dtype=torch.int64),  # images counted
        "n_classes": torch.zeros((), dtype=torch.int64),  # images counted with logits and targets
    }


def _no_image(name: str) -> RuntimeError:
    """The error of ``compute()`` over zero images (on every process)."""
    return RuntimeError(
        f"{name}.compute(): no image was evaluated (update() was not called, or only with empty batches or "
        "with valid=False for every image); there is no accuracy to report"
    )


def _compute(
    state: Mapping[str, Tensor],
    protocol: BoxProtocol,
    thresholds: Tensor,
    iou_thresholds: tuple[float, ...],
    name: str,
) -> BoxAccuracyResult:
    """The result of a box metric's (global, CPU) ``state``: a pure function, shared by the classes and the
    functional forms."""
    n = int(state["n"])
    if n == 0:
        raise _no_image(name)
    n_classes = int(state["n_classes"])
    if 0 < n_classes < n:
        raise ValueError(
            f"logits and targets were given for {n_classes} of {n} images (over all processes): give them "
            "to every update or none"
        )
    with_classes = n_classes > 0
    return BoxAccuracyResult.from_counts(
        protocol,
        thresholds,
        iou_thresholds,
        state["correct"],
        n,
        top1_counts=state["top1"] if with_classes else None,
        top5_counts=state["top5"] if with_classes else None,
    )


class _BoxMetric(CountingMetric):
    """The count state, configuration, checks and ``compute()`` shared by the box metrics."""

    higher_is_better = True
    protocol: BoxProtocol
    thresholds: Tensor
    iou_thresholds: tuple[float, ...]

    def _empty_state(self) -> dict[str, Tensor]:
        return _empty_box_state(len(self.iou_thresholds), self.thresholds.numel())

    def _config(self) -> dict[str, Tensor]:
        return {
            "protocol": torch.tensor(_PROTOCOLS.index(self.protocol), dtype=torch.int64),
            "thresholds": self.thresholds.clone(),
            "iou_thresholds": torch.tensor(self.iou_thresholds, dtype=torch.float64),
        }

    def _check_counts(self, state: Mapping[str, Tensor]) -> str | None:
        n, n_classes = state["n"], state["n_classes"]
        correct, top1, top5 = state["correct"], state["top1"], state["top5"]
        if bool((correct > n).any()):
            return f"state_dict['correct'] counts up to {int(correct.max())} correct images of n = {int(n)}"
        if bool(n_classes > n):
            return f"state_dict['n_classes'] is {int(n_classes)}, more than n = {int(n)}"
        if bool((top1 > top5).any() | (top5 > correct).any() | (top5 > n_classes).any()):
            return "state_dict['top1'] / ['top5'] count more images than 'correct' or 'n_classes' allow"
        return None

    def _describe(self) -> str:
        return f"{type(self).__name__} (protocol {self.protocol!r})"

    def compute(self) -> BoxAccuracyResult:
        """The accuracies, in percent, at the best threshold of the split (one τ per δ), over all processes.

        Under ``torch.distributed`` (and ``sync_on_compute``) this sums the counts over the processes first:
        call it on every rank; every rank gets the same result.

        Returns:
            A :class:`~lowcam.metrics.BoxAccuracyResult`: ``value``, ``acc`` / ``threshold`` per δ, the
            accuracy ``curve`` over the thresholds, ``counts``, ``n`` and, for "ornet", ``gt_known``,
            ``top1_loc`` and ``top5_loc`` (None without logits).

        Raises:
            RuntimeError: no image was evaluated (on any process). torchmetrics would warn and return a
                number here; with no image there is no best threshold, and any number would be made up.
            ValueError: some processes or updates gave logits and targets and others did not.
        """
        return _compute(
            self._global_state(), self.protocol, self.thresholds, self.iou_thresholds, type(self).__name__
        )


class BoxAccuracy:
    """A box metric picked by protocol name: ``BoxAccuracy("ornet", ...)`` is
    :class:`~lowcam.metrics.LocalizationAccuracy`, ``BoxAccuracy("maxboxacc", ...)`` is
    ``MaxBoxAcc(version=1, ...)`` and ``BoxAccuracy("maxboxacc_v2", ...)`` is ``MaxBoxAcc(version=2, ...)``
    (as ``torchmetrics.Accuracy(task=...)`` returns the class of the task).

    ``BoxAccuracy(protocol="maxboxacc_v2", *, image_size=None, chunk_size=None, cpu_threads=1, **kwargs)``:
    ``image_size`` is for "ornet" only, ``chunk_size`` and ``cpu_threads`` for the contour protocols only, and
    ``kwargs`` are the other arguments of the class (``thresholds``, ``iou_thresholds``, ...). An unknown
    protocol, or an argument the protocol does not take, is a ``ValueError``.

    Example:
        >>> from lowcam import metrics
        >>> type(metrics.BoxAccuracy("ornet")).__name__, metrics.BoxAccuracy("maxboxacc").version
        ('LocalizationAccuracy', 1)
    """

    def __new__(  # type: ignore[misc]  # a factory: returns an instance of another class
        cls,
        protocol: BoxProtocol = "maxboxacc_v2",
        *,
        image_size: int | None = None,
        chunk_size: int | None = None,
        cpu_threads: int | None = 1,
        **kwargs: Any,
    ) -> LocalizationAccuracy | MaxBoxAcc:
        from lowcam.metrics.localization import LocalizationAccuracy
        from lowcam.metrics.maxboxacc import MaxBoxAcc

        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
        if protocol == "ornet":
            if chunk_size is not None or cpu_threads != 1:
                raise ValueError("chunk_size and cpu_threads apply to the contour protocols, not to 'ornet'")
            return LocalizationAccuracy(image_size=224 if image_size is None else image_size, **kwargs)
        if image_size is not None:
            raise ValueError(f"image_size applies to protocol 'ornet' only, not to {protocol!r}")
        version: Literal[1, 2] = 1 if protocol == "maxboxacc" else 2
        return MaxBoxAcc(version=version, chunk_size=chunk_size, cpu_threads=cpu_threads, **kwargs)
