"""The results of ``compute()``: typed attributes, flat float ``scalars()`` for loggers, ``to_dict()`` for
JSON, and plots."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BoxAccuracyResult", "PxAPResult"]


def _axes(ax: Any) -> Any:
    """``ax``, or the axes of a new matplotlib figure (matplotlib is imported only here)."""
    if ax is not None:
        return ax
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError("plot() needs matplotlib: pip install 'lowcam[plot]'") from error
    return Figure(figsize=(5.0, 4.0), layout="constrained").subplots()


def _grid(value: float) -> float:
    """A threshold as the value on its grid that it stands for: ``287 * 0.001`` is ``0.28700000000000003`` in
    float64, printed ``0.287`` (12 significant digits)."""
    return float(f"{value:.12g}")


def _key(delta: float) -> str:
    """The string key of an IoU threshold in :meth:`~BoxAccuracyResult.to_dict` and ``scalars()``: ``"0.5"``."""
    return f"{delta:g}"


class _Result:
    """What every result has: the number of images ``n`` and a ``repr`` of its :meth:`scalars`."""

    _n: int

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scalars()})"

    @property
    def n(self) -> int:
        """The number of images counted."""
        return self._n

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{name: float}`` for loggers, each name after ``prefix`` (each result lists its own)."""
        raise NotImplementedError


class BoxAccuracyResult(_Result):
    """What ``compute()`` of :class:`~lowcam.metrics.LocalizationAccuracy` and :class:`~lowcam.metrics.MaxBoxAcc`
    returns.

    Built from the correct counts; every number is in percent of the ``n`` images. The accuracy at IoU
    threshold ``δ`` is the best over the map thresholds τ (the first τ reaching it); the value is the mean
    over ``δ``. :meth:`scalars` gives flat floats for loggers, :meth:`to_dict` everything as plain floats
    and lists that ``json.dumps`` accepts.

    Attributes:
        protocol: ``"ornet"``, ``"maxboxacc"`` or ``"maxboxacc_v2"``.
        thresholds: ``(T,)`` float64 map thresholds τ.
        iou_thresholds: the ``D`` IoU thresholds δ.
        curve: ``(D, T)`` float64 accuracy (percent) at each ``(δ, τ)``.

    Example:
        >>> import torch
        >>> r = BoxAccuracyResult.from_counts(
        ...     "maxboxacc", torch.tensor([0.0, 0.5]), (0.5,), torch.tensor([[1, 2]]), 4
        ... )
        >>> r.value, r.acc, r.threshold, r.curve.tolist()
        (50.0, {0.5: 50.0}, {0.5: 0.5}, [[25.0, 50.0]])
        >>> r.scalars(prefix="val/")
        {'val/value': 50.0, 'val/n': 4.0, 'val/acc@0.5': 50.0, 'val/threshold@0.5': 0.5}
        >>> r.to_dict()["acc"]
        {'0.5': 50.0}
    """

    protocol: str
    thresholds: Tensor
    iou_thresholds: tuple[float, ...]
    curve: Tensor

    def __init__(
        self,
        protocol: str,
        thresholds: Tensor,
        iou_thresholds: tuple[float, ...],
        counts: Tensor,
        n: int,
        top1_counts: Tensor | None = None,
        top5_counts: Tensor | None = None,
    ) -> None:
        counts = counts.cpu()
        self.protocol = protocol
        self.thresholds = thresholds.cpu().to(torch.float64)
        self.iou_thresholds = tuple(iou_thresholds)
        self.curve = counts.to(torch.float64) * 100.0 / n  # (D, T)
        best = self.curve.argmax(1)  # the first maximum
        self._n = int(n)
        self._acc = {d: float(self.curve[i, best[i]]) for i, d in enumerate(self.iou_thresholds)}
        self._threshold = {d: float(self.thresholds[best[i]]) for i, d in enumerate(self.iou_thresholds)}
        self._counts = {d: counts[i].clone() for i, d in enumerate(self.iou_thresholds)}
        self._value = sum(self._acc.values()) / len(self.iou_thresholds)
        self._gt_known: float | None = None
        self._top1_loc: float | None = None
        self._top5_loc: float | None = None
        self._top1_counts: dict[float, Tensor] | None = None
        self._top5_counts: dict[float, Tensor] | None = None
        if protocol == "ornet":
            j = int(best[0])
            self._gt_known = float(self.curve[0, j])
            if top1_counts is not None and top5_counts is not None:
                top1, top5 = top1_counts.cpu(), top5_counts.cpu()
                self._top1_loc = float(top1[0, j]) * 100.0 / n
                self._top5_loc = float(top5[0, j]) * 100.0 / n
                self._top1_counts = {d: top1[i].clone() for i, d in enumerate(self.iou_thresholds)}
                self._top5_counts = {d: top5[i].clone() for i, d in enumerate(self.iou_thresholds)}

    @classmethod
    def from_counts(
        cls,
        protocol: str,
        thresholds: Tensor,
        iou_thresholds: tuple[float, ...],
        counts: Tensor,
        n: int,
        *,
        top1_counts: Tensor | None = None,
        top5_counts: Tensor | None = None,
    ) -> BoxAccuracyResult:
        """The result of ``(D, T)`` correct counts over ``n > 0`` images.

        Args:
            protocol: ``"ornet"``, ``"maxboxacc"`` or ``"maxboxacc_v2"``.
            thresholds: ``(T,)`` map thresholds τ.
            iou_thresholds: the ``D`` IoU thresholds δ.
            counts: ``(D, T)`` int64, images correct at ``(δ, τ)``.
            n: the number of images.
            top1_counts: ``(D, T)`` images also correct in Top-1 class ("ornet" with logits), or None.
            top5_counts: the same for Top-5.
        """
        return cls(protocol, thresholds, iou_thresholds, counts, n, top1_counts, top5_counts)

    @property
    def value(self) -> float:
        """The headline number: the mean over δ of ``acc[δ]`` (MaxBoxAcc, MaxBoxAccV2; GT-known for "ornet")."""
        return self._value

    @property
    def acc(self) -> dict[float, float]:
        """``{δ: accuracy at the best τ}``, percent."""
        return dict(self._acc)

    @property
    def threshold(self) -> dict[float, float]:
        """``{δ: the chosen τ}`` (the first τ with the best accuracy), exactly as compared with the maps."""
        return dict(self._threshold)

    @property
    def counts(self) -> dict[float, Tensor]:
        """``{δ: (T,) int64 correct counts per τ}``."""
        return {d: c.clone() for d, c in self._counts.items()}

    @property
    def gt_known(self) -> float | None:
        """Protocol "ornet": GT-known Loc, percent; None for the other protocols."""
        return self._gt_known

    @property
    def top1_loc(self) -> float | None:
        """Protocol "ornet" with logits: Top-1 Loc at the chosen τ, percent; else None."""
        return self._top1_loc

    @property
    def top5_loc(self) -> float | None:
        """Protocol "ornet" with logits: Top-5 Loc at the chosen τ, percent; else None."""
        return self._top5_loc

    @property
    def top1_counts(self) -> dict[float, Tensor] | None:
        """Protocol "ornet" with logits: ``{δ: (T,) int64}`` images also right in Top-1 class; else None."""
        return None if self._top1_counts is None else dict(self._top1_counts)

    @property
    def top5_counts(self) -> dict[float, Tensor] | None:
        """Protocol "ornet" with logits: the same for Top-5; else None."""
        return None if self._top5_counts is None else dict(self._top5_counts)

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{name: float}`` for loggers: ``value``, ``n``, ``acc@δ`` and ``threshold@δ`` for every δ,
        and for "ornet" ``gt_known`` (and ``top1_loc``, ``top5_loc`` when known), each name after ``prefix``.
        Thresholds are written as the values of their grid (``0.287``, not ``0.28700000000000003``)."""
        out = {"value": self.value, "n": float(self.n)}
        for d in self.iou_thresholds:
            out[f"acc@{_key(d)}"] = self._acc[d]
        for d in self.iou_thresholds:
            out[f"threshold@{_key(d)}"] = _grid(self._threshold[d])
        for key, number in (
            ("gt_known", self._gt_known),
            ("top1_loc", self._top1_loc),
            ("top5_loc", self._top5_loc),
        ):
            if number is not None:
                out[key] = float(number)
        return {prefix + k: v for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain Python values that ``json.dumps`` accepts.

        Keys: ``"protocol"``, ``"value"``, ``"n"``, ``"acc"`` and ``"threshold"`` (``{"0.5": float}``, the
        threshold as its grid value), ``"counts"`` (``{"0.5": [int, ...]}``), ``"thresholds"`` (the τ, as
        grid values), ``"iou_thresholds"``, ``"curve"`` (``D`` lists of percentages) and, for "ornet",
        ``"gt_known"``, ``"top1_loc"``, ``"top5_loc"`` (None without logits), ``"top1_counts"`` and
        ``"top5_counts"`` (None without logits).
        """
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "value": self.value,
            "n": self.n,
            "acc": {_key(d): v for d, v in self._acc.items()},
            "threshold": {_key(d): _grid(v) for d, v in self._threshold.items()},
            "counts": {_key(d): [int(c) for c in v.tolist()] for d, v in self._counts.items()},
            "thresholds": [_grid(t) for t in self.thresholds.tolist()],
            "iou_thresholds": list(self.iou_thresholds),
            "curve": self.curve.tolist(),
        }
        if self.protocol == "ornet":
            out["gt_known"] = self._gt_known
            out["top1_loc"] = self._top1_loc
            out["top5_loc"] = self._top5_loc
            for key, counts in (("top1_counts", self._top1_counts), ("top5_counts", self._top5_counts)):
                out[key] = None if counts is None else {_key(d): v.tolist() for d, v in counts.items()}
        return out

    def plot(self, ax: Any = None) -> Any:
        """Accuracy against the map threshold τ, one curve per δ, the chosen τ marked (needs matplotlib).

        Args:
            ax: matplotlib axes to draw in; None for a new figure (``ax.figure.savefig(path)`` saves it).

        Returns:
            The axes.
        """
        ax = _axes(ax)
        taus = self.thresholds.tolist()
        strict = ">" if self.protocol == "ornet" else "≥"
        for i, d in enumerate(self.iou_thresholds):
            (line,) = ax.plot(taus, self.curve[i].tolist(), label=f"IoU {strict} {d:g}")
            ax.plot([self._threshold[d]], [self._acc[d]], "o", color=line.get_color())
        ax.set_xlabel("map threshold τ")
        ax.set_ylabel("box accuracy (%)")
        ax.set_title(f"{self.protocol}: {self.value:.2f} % over {self.n} images")
        ax.set_ylim(0, 100)
        ax.legend()
        return ax


class PxAPResult(_Result):
    """What :meth:`~lowcam.metrics.PxAP.compute` returns: PxAP in percent, its precision–recall curve and the
    number of images; :meth:`scalars` for loggers, :meth:`to_dict` for JSON.

    Example:
        >>> import torch
        >>> r = PxAPResult.from_curves(100.0, torch.ones(3), torch.tensor([0.5, 1.0, 1.0]), 1)
        >>> r.value, r.scalars()
        (100.0, {'value': 100.0, 'n': 1.0})
    """

    def __init__(self, value: float, precision: Tensor, recall: Tensor, n: int) -> None:
        self._value = float(value)
        self._precision = torch.as_tensor(precision)
        self._recall = torch.as_tensor(recall)
        self._n = int(n)

    @classmethod
    def from_curves(cls, value: float, precision: Tensor, recall: Tensor, n: int) -> PxAPResult:
        """The result of a PxAP ``value`` with its precision and recall curves over ``n`` images."""
        return cls(value, precision, recall, n)

    @property
    def value(self) -> float:
        """PxAP, percent."""
        return self._value

    @property
    def precision(self) -> Tensor:
        """``(T + 2,)`` float64 precision at each bin, from the top bin down."""
        return self._precision

    @property
    def recall(self) -> Tensor:
        """``(T + 2,)`` float64 recall at each bin, from the top bin down."""
        return self._recall

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{name: float}`` for loggers: ``value`` and ``n``, each name after ``prefix``."""
        return {prefix + "value": self.value, prefix + "n": float(self.n)}

    def to_dict(self) -> dict[str, Any]:
        """``{"value", "n", "precision", "recall"}`` as plain floats and lists (``json.dumps`` accepts it)."""
        return {
            "value": self.value,
            "n": self.n,
            "precision": self._precision.tolist(),
            "recall": self._recall.tolist(),
        }

    def plot(self, ax: Any = None) -> Any:
        """The precision–recall curve whose area is PxAP (needs matplotlib).

        Args:
            ax: matplotlib axes to draw in; None for a new figure (``ax.figure.savefig(path)`` saves it).

        Returns:
            The axes.
        """
        ax = _axes(ax)
        ax.step(self.recall.tolist(), self.precision.tolist(), where="post", label=f"PxAP {self.value:.2f} %")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"PxAP over {self.n} images")
        ax.legend()
        return ax
