"""The WSOL metrics as ``torchmetrics`` metrics: :class:`TMLocalizationAccuracy`, :class:`TMMaxBoxAcc` and
:class:`TMPxAP` (the ``torchmetrics`` extra: ``pip install "lowcam[torchmetrics]"``).

Each is a ``torchmetrics.Metric`` (so an ``nn.Module``) whose states are the int64 counts of its native
counterpart (:class:`~lowcam.metrics.LocalizationAccuracy`, :class:`~lowcam.metrics.MaxBoxAcc`,
:class:`~lowcam.metrics.PxAP`), declared with ``add_state(..., dist_reduce_fx="sum", persistent=True)``.
torchmetrics then provides what it provides to its own metrics: the sum over ``torch.distributed``
processes in ``compute()``, ``forward`` (the value of one batch, while accumulating), ``MetricCollection``
with compute groups, ``merge_state``, ``.to()`` with the parent model and the counts in the parent's
``state_dict`` (``metric.persistent(False)`` leaves them out).

The numbers are the native ones: ``update`` lets the native metric check the batch and count it into these
states (the same checks and the same pure counting function), and ``compute`` passes the summed states to
the native pure ``_compute``.

``compute()`` returns a ``dict`` of 0-dim float64 tensors keyed like the native result's ``scalars()``
(``"value"``, ``"n"``, ``"acc@0.5"``, ``"threshold@0.5"``, …, ``"gt_known"``, ``"top1_loc"``,
``"top5_loc"`` for "ornet"): what ``LightningModule.log_dict`` and every logger take, and what
``MetricCollection`` flattens. ``forward`` returns the same dict for its batch alone. :meth:`TMMaxBoxAcc.result`
(and the others') gives the typed native result (curves, counts, ``to_dict()``, ``plot()``) of the same
summed counts.

This module imports torchmetrics; ``import lowcam`` and ``import lowcam.metrics`` never do.

Example:
    >>> import torch
    >>> from lowcam.metrics import prepare_scoremap
    >>> from lowcam.metrics.tm import TMMaxBoxAcc
    >>> cams = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    >>> gt = [torch.tensor([[4, 4, 20, 20]]), torch.tensor([[0, 0, 27, 27]])]
    >>> metric = TMMaxBoxAcc(version=2)
    >>> batch = metric(prepare_scoremap(cams, size=28), gt)  # forward: this batch's values, accumulated too
    >>> sorted(metric.compute())
    ['acc@0.3', 'acc@0.5', 'acc@0.7', 'n', 'threshold@0.3', 'threshold@0.5', 'threshold@0.7', 'value']
    >>> float(metric.compute()["value"]) == metric.result().value
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

import torch
from torch import Tensor

try:
    from torchmetrics import Metric
except ImportError as _error:  # pragma: no cover - torchmetrics is installed in the test environment
    raise ImportError(
        'lowcam.metrics.tm needs torchmetrics, which lowcam does not install by itself: pip install "lowcam[torchmetrics]"'
    ) from _error

from lowcam.metrics import accuracy as _accuracy
from lowcam.metrics import pxap as _pxap
from lowcam.metrics.localization import LocalizationAccuracy
from lowcam.metrics.maxboxacc import MaxBoxAcc
from lowcam.metrics.pxap import PxAP
from lowcam.metrics.results import BoxAccuracyResult, PxAPResult

__all__ = ["TMLocalizationAccuracy", "TMMaxBoxAcc", "TMPxAP"]

_R = TypeVar("_R", BoxAccuracyResult, PxAPResult)
_Native = LocalizationAccuracy | MaxBoxAcc | PxAP


class _CountingTM(Metric, Generic[_R]):
    """A ``torchmetrics.Metric`` whose states are the counts of a native ``CountingMetric``."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, native: _Native, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._native = native
        self._names = tuple(native._empty_state())
        for name, default in native._empty_state().items():
            self.add_state(name, default=default, dist_reduce_fx="sum", persistent=True)
        self._last: _R | None = None

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        """The persistent counts, and the native metric's configuration under ``config/<name>`` (as
        :meth:`lowcam.metrics.CountingMetric.state_dict` saves it), so that loading can check it."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if any(self._persistent.get(name, False) for name in self._names):
            for key, value in self._native._config().items():
                destination[f"{prefix}config/{key}"] = value.clone()

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Check a saved state as the native metric does (its configuration, impossible counts), then load."""
        config_keys = [f"config/{key}" for key in self._native._config()]
        if all(prefix + name in state_dict for name in self._names):
            saved = {name: state_dict[prefix + name] for name in self._names}
            saved.update({key: state_dict[prefix + key] for key in config_keys if prefix + key in state_dict})
            self._native.load_state_dict(saved)  # raises ValueError / TypeError naming the problem
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for key in config_keys:
            if prefix + key in unexpected_keys:
                unexpected_keys.remove(prefix + key)

    def _count(self, *args: Any, **kwargs: Any) -> None:
        """Check and count a batch with the native metric, into this metric's states (in place).

        The native ``update`` adds to the tensors of its state dict; here that dict holds this metric's
        states. When the inputs live on another device, the native metric moves the counts there (as it does
        on its own), and the moved tensors become the states.
        """
        native = self._native
        state = {k: getattr(self, k) for k in self._names}
        native._state = state
        native._device = state[self._names[0]].device
        native._synced = None
        try:
            native.update(*args, **kwargs)
        finally:
            for k in self._names:
                if native._state[k] is not state[k]:
                    setattr(self, k, native._state[k])

    def _result_of(self, state: dict[str, Tensor]) -> _R:
        raise NotImplementedError

    def compute(self) -> dict[str, Tensor]:
        """The native result's ``scalars()`` of the counts summed over the processes, as 0-dim float64
        tensors on the states' device (the typed result is :meth:`result`).

        Raises:
            RuntimeError: no image was evaluated (on any process), as the native ``compute()``.
        """
        result = self._result_of({k: getattr(self, k).detach().cpu() for k in self._names})
        self._last = result
        device = getattr(self, self._names[0]).device
        return {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in result.scalars().items()}

    def result(self) -> _R:
        """The typed native result (curves, counts, ``to_dict()``, ``plot()``) of the counts summed over the
        processes: the one that :meth:`compute` summarises (under ``torch.distributed``, call it on every
        rank, as ``compute()``)."""
        self.compute()
        if self._last is None:  # pragma: no cover - compute() sets it or raises
            raise RuntimeError("compute() gave no result")
        return self._last

    def reset(self) -> None:
        """Forget every image seen (torchmetrics' reset; the native checker forgets too)."""
        super().reset()
        self._native.reset()

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot with matplotlib (the ``plot`` extra); returns ``(figure, axes)`` as torchmetrics' ``plot``.

        Args:
            val: None: the curve of the accumulated result (:meth:`result` ``.plot``: accuracy against the
                map threshold, or PxAP's precision–recall curve). A ``compute()`` / ``forward`` output or a
                list of them: torchmetrics' plot of those values (one per step).
            ax: matplotlib axes to draw in; None for a new figure.
        """
        if val is None:
            axes = self.result().plot(ax)
            return axes.figure, axes
        return self._plot(val, ax)


class TMLocalizationAccuracy(_CountingTM[BoxAccuracyResult]):
    """GT-known / Top-1 / Top-5 Loc of the ORNet code (:class:`~lowcam.metrics.LocalizationAccuracy`) as a
    ``torchmetrics.Metric``.

    Args:
        thresholds: map thresholds τ, as :class:`~lowcam.metrics.LocalizationAccuracy` (checked by it).
        iou_thresholds: IoU thresholds δ, as :class:`~lowcam.metrics.LocalizationAccuracy`.
        image_size: the side of the image the GT boxes live in, as :class:`~lowcam.metrics.LocalizationAccuracy`.
        kwargs: torchmetrics' ``Metric`` arguments (``sync_on_compute``, ``process_group``,
            ``compute_on_cpu``, ...).

    ``update(maps, gt_boxes, *, logits=None, targets=None, valid=None)`` takes the arguments of
    :meth:`~lowcam.metrics.LocalizationAccuracy.update`. ``compute()`` returns
    ``{"value", "n", "acc@δ", "threshold@δ", "gt_known"}`` (and ``"top1_loc"``, ``"top5_loc"`` with logits)
    as 0-dim float64 tensors, percent; :meth:`~lowcam.metrics.tm.TMLocalizationAccuracy.result` the :class:`~lowcam.metrics.BoxAccuracyResult`.
    Updates with and without logits cannot be mixed: within ``update`` calls the native check says so at once;
    over ``forward`` calls or processes, ``compute()`` raises the native ``ValueError``.

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 4, 4)
        >>> maps[0, 1:3, 1:3] = 0.9
        >>> metric = TMLocalizationAccuracy(image_size=16)
        >>> metric.update(maps, [torch.tensor([[4.0, 4.0, 8.0, 8.0]])])
        >>> {k: float(v) for k, v in metric.compute().items()}["gt_known"]
        100.0
    """

    def __init__(
        self,
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | Tensor | float | None = None,
        image_size: int = 224,
        **kwargs: Any,
    ) -> None:
        native = LocalizationAccuracy(
            thresholds=thresholds, iou_thresholds=iou_thresholds, image_size=image_size, sync_on_compute=False
        )
        super().__init__(native, **kwargs)
        self.thresholds = native.thresholds
        self.iou_thresholds = native.iou_thresholds
        self.image_size = native.image_size

    def update(
        self,
        maps: Tensor,
        gt_boxes: Sequence[Tensor] | Tensor,
        *,
        logits: Tensor | None = None,
        targets: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> None:
        """Count a batch: the arguments, checks and errors of
        :meth:`~lowcam.metrics.LocalizationAccuracy.update`."""
        self._count(maps, gt_boxes, logits=logits, targets=targets, valid=valid)

    def _result_of(self, state: dict[str, Tensor]) -> BoxAccuracyResult:
        return _accuracy._compute(
            state, "ornet", self.thresholds, self.iou_thresholds, "TMLocalizationAccuracy"
        )

    def extra_repr(self) -> str:
        return f"iou_thresholds={self.iou_thresholds}, image_size={self.image_size}"


class TMMaxBoxAcc(_CountingTM[BoxAccuracyResult]):
    """MaxBoxAcc (``version=1``) or MaxBoxAccV2 (``version=2``) of wsolevaluation
    (:class:`~lowcam.metrics.MaxBoxAcc`) as a ``torchmetrics.Metric``.

    Args:
        version: 1 or 2, as :class:`~lowcam.metrics.MaxBoxAcc` (every setting is checked by it).
        thresholds: map thresholds τ.
        iou_thresholds: IoU thresholds δ; default ``(0.5,)`` for version 1, ``(0.3, 0.5, 0.7)`` for 2.
        boxes_outside: ``"error"`` or ``"keep"``.
        chunk_size: images processed together in the contour engine.
        cpu_threads: torch intra-op threads on the CPU during ``update``.
        kwargs: torchmetrics' ``Metric`` arguments (``sync_on_compute``, ``process_group``,
            ``compute_on_cpu``, ...).

    ``update(maps, gt_boxes, *, valid=None)`` takes the arguments of
    :meth:`~lowcam.metrics.MaxBoxAcc.update`. ``compute()`` returns ``{"value", "n",
    "acc@δ", "threshold@δ"}`` as 0-dim float64 tensors (percent, and τ); :meth:`~lowcam.metrics.tm.TMMaxBoxAcc.result` the
    :class:`~lowcam.metrics.BoxAccuracyResult`.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8, dtype=torch.float64)
        >>> maps[0, 2:6, 2:6] = 1.0
        >>> gt = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[4, 4, 7, 7]])]
        >>> metric = TMMaxBoxAcc(version=1)
        >>> metric.update(maps, gt)
        >>> {k: float(v) for k, v in metric.compute().items()}
        {'value': 50.0, 'n': 2.0, 'acc@0.5': 50.0, 'threshold@0.5': 0.0}
    """

    def __init__(
        self,
        version: Literal[1, 2] = 2,
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | Tensor | float | None = None,
        boxes_outside: Literal["error", "keep"] = "error",
        chunk_size: int | None = None,
        cpu_threads: int | None = 1,
        **kwargs: Any,
    ) -> None:
        native = MaxBoxAcc(
            version,
            thresholds=thresholds,
            iou_thresholds=iou_thresholds,
            boxes_outside=boxes_outside,
            chunk_size=chunk_size,
            cpu_threads=cpu_threads,
            sync_on_compute=False,
        )
        super().__init__(native, **kwargs)
        self.version = native.version
        self.protocol = native.protocol
        self.thresholds = native.thresholds
        self.iou_thresholds = native.iou_thresholds

    def update(
        self, maps: Tensor, gt_boxes: Sequence[Tensor] | Tensor, *, valid: Tensor | None = None
    ) -> None:
        """Count a batch: the arguments, checks and errors of
        :meth:`~lowcam.metrics.MaxBoxAcc.update`."""
        self._count(maps, gt_boxes, valid=valid)

    def _result_of(self, state: dict[str, Tensor]) -> BoxAccuracyResult:
        return _accuracy._compute(state, self.protocol, self.thresholds, self.iou_thresholds, "TMMaxBoxAcc")

    def extra_repr(self) -> str:
        return f"version={self.version}, iou_thresholds={self.iou_thresholds}"


class TMPxAP(_CountingTM[PxAPResult]):
    """Pixel average precision (:class:`~lowcam.metrics.PxAP`) as a ``torchmetrics.Metric``.

    Args:
        thresholds: the score thresholds, as :class:`~lowcam.metrics.PxAP` (checked by it).
        kwargs: torchmetrics' ``Metric`` arguments (``sync_on_compute``, ``process_group``,
            ``compute_on_cpu``, ...).

    ``update(maps, masks, ignore=None, *, valid=None)`` takes the arguments of
    :meth:`~lowcam.metrics.PxAP.update`. ``compute()`` returns ``{"value", "n"}`` as 0-dim
    float64 tensors (PxAP in percent, images); :meth:`~lowcam.metrics.tm.TMPxAP.result` the :class:`~lowcam.metrics.PxAPResult`.

    Example:
        >>> import torch
        >>> metric = TMPxAP()
        >>> metric.update(torch.tensor([[[0.9, 0.8], [0.2, 0.1]]]), torch.tensor([[[1, 1], [0, 0]]]))
        >>> float(metric.compute()["value"])
        100.0
    """

    def __init__(self, *, thresholds: Tensor | Sequence[float] | None = None, **kwargs: Any) -> None:
        native = PxAP(thresholds=thresholds, sync_on_compute=False)
        super().__init__(native, **kwargs)
        self.thresholds = native.thresholds

    def update(
        self,
        maps: Tensor,
        masks: Tensor | Sequence[Tensor],
        ignore: Tensor | Sequence[Tensor] | None = None,
        *,
        valid: Tensor | None = None,
    ) -> None:
        """Count a batch: the arguments, checks and errors of :meth:`~lowcam.metrics.PxAP.update`."""
        self._count(maps, masks, ignore, valid=valid)

    def _result_of(self, state: dict[str, Tensor]) -> PxAPResult:
        return _pxap._compute(state, self.thresholds)

    def extra_repr(self) -> str:
        return f"thresholds={self.thresholds.numel()}"
