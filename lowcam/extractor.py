"""CAMs of an unmodified classifier: :class:`lowcam.ClassActivationMapper` and :func:`lowcam.class_activation_maps`.

A forward hook on the classifier's feature layer and the weight of its linear head give the class
activation maps of :func:`lowcam.cam_class_maps`, without restructuring the model. Re-exported by
:mod:`lowcam.maps` and :mod:`lowcam`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from lowcam.maps import cam_class_maps, select_class_map

__all__ = ["ClassActivationMapper", "class_activation_maps"]


def _named_module(model: torch.nn.Module, name: str, what: str) -> torch.nn.Module:
    """``model``'s sub-module called ``name`` (``""`` is the model itself), or a ValueError naming it."""
    modules: dict[str, torch.nn.Module] = dict(model.named_modules())
    if name not in modules:
        known = [n for n in modules if n][-8:]
        raise ValueError(f"{what} {name!r} is not a sub-module of the model (its last ones: {known})")
    return modules[name]


def _default_classifier(model: torch.nn.Module) -> torch.nn.Linear:
    """timm's ``get_classifier()`` when it is a linear layer, else the model's last ``nn.Linear``."""
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
        if isinstance(head, torch.nn.Linear):
            return head
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(
            "the model has no nn.Linear classifier: pass classifier= (the linear layer after global pooling)"
        )
    return linears[-1]


class ClassActivationMapper:
    r"""Class activation maps (CAM) of an unmodified classifier: a forward hook on one layer, the head's weights.

    For a classifier whose head is ``linear(GAP(features))`` (torchvision's ResNets, DenseNets, ...; timm's
    ResNets, EfficientNets, ...; not timm's ConvNeXts, whose head normalises the pooled feature before the
    linear layer, so their hooked maps are not CAMs), one forward pass of the model gives its logits and, through a
    forward hook on the layer that produces ``features`` (``(B, K, h, w)``), the class maps

    .. math::

        \mathrm{cams}_{b,c,i,j} = \sum_k W_{c,k}\, \mathrm{features}_{b,k,i,j} \;(+\, \mathrm{bias}_c),

    the :func:`lowcam.cam_class_maps` of the hooked features and the head's weight ``W`` (``(C, K)``). The model is
    not changed: the hooks are removed before each call returns, also when the forward raises. The maps are
    computed for the whole batch at once, in the model's mode and grad mode (call ``model.eval()`` and wrap
    inference in :func:`torch.no_grad`).

    - ``classifier``: the linear head, an ``nn.Linear`` or its name in ``model.named_modules()``; by
      default timm's ``model.get_classifier()`` when it is an ``nn.Linear``, else the model's last
      ``nn.Linear`` (torchvision's ``fc`` or ``classifier``).
    - ``target_layer``: the module whose output is ``features``, or its name; by default found on the
      first call: the last module to finish, before the head runs, whose output has shape
      ``(B, K, h, w)`` with ``K`` the head's ``in_features`` and ``h · w > 1`` (e.g. a ResNet's
      ``layer4``; the global pooling's ``(B, K, 1, 1)`` is skipped). Its name is kept in
      ``target_name``. A model whose head is not GAP + linear (VGG's ``flatten → MLP``) has no such
      layer: that is a ValueError asking for the layers.
    - ``bias``: CAM leaves the head's bias out (default), which shifts each class map by a constant and
      changes nothing after :func:`lowcam.normalize_map` or :func:`lowcam.metrics.prepare_scoremap`; with
      ``bias=True`` the maps' spatial mean equals the logits exactly.

    Args:
        model: the classifier, unchanged; its forward must return ``(B, C)`` logits.
        target_layer: the feature layer (module or name), or None to find it.
        classifier: the linear head (module or name), or None to find it.
        bias: add the head's bias to the maps.

    Shape:
        - images: whatever the model takes, e.g. ``(B, 3, H, W)``.
        - output of :meth:`__call__`: ``(B, C, h, w)`` raw CAMs (``classes=None``), or ``(B, 1, h, w)``,
          the map of one class per image; the features' dtype and device.

    Raises:
        TypeError: ``model``, ``target_layer`` or ``classifier`` of the wrong type.
        ValueError: a layer name that is not in the model; no layer fits (see above).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(  # a backbone, GAP and a linear head (e.g. a torchvision ResNet)
        ...     nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
        ... ).eval()
        >>> mapper = ClassActivationMapper(model)
        >>> with torch.no_grad():
        ...     logits, cams = mapper.forward(torch.rand(2, 3, 32, 32))
        >>> mapper.target_name, tuple(cams.shape), tuple(logits.shape)  # the ReLU's output is hooked
        ('1', (2, 5, 8, 8), (2, 5))
        >>> torch.allclose(cams.mean(dim=(2, 3)) + model[4].bias, logits, atol=1e-5)
        True
        >>> with torch.no_grad():
        ...     maps = mapper(torch.rand(2, 3, 32, 32), classes="predicted")  # (B, 1, h, w)
        >>> from lowcam.metrics import prepare_scoremap
        >>> prepare_scoremap(maps, size=32).shape
        torch.Size([2, 32, 32])
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target_layer: str | torch.nn.Module | None = None,
        classifier: str | torch.nn.Linear | None = None,
        *,
        bias: bool = False,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(classifier, str):
            head = _named_module(model, classifier, "classifier")
        elif classifier is None:
            head = _default_classifier(model)
        else:
            head = classifier
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"classifier must be an nn.Linear (or its name), got {type(head).__name__}")
        if target_layer is not None and not isinstance(target_layer, (str, torch.nn.Module)):
            raise TypeError(
                f"target_layer must be a module, its name or None, got {type(target_layer).__name__}"
            )
        self.model = model
        self.classifier: torch.nn.Linear = head
        self.bias = bool(bias)
        self._target: torch.nn.Module | None = None
        #: the name of the hooked layer in ``model.named_modules()`` (None until found)
        self.target_name: str | None = None
        if isinstance(target_layer, str):
            self._target = _named_module(model, target_layer, "target_layer")
            self.target_name = target_layer
        elif isinstance(target_layer, torch.nn.Module):
            names = {id(m): n for n, m in model.named_modules()}
            if id(target_layer) not in names:
                raise ValueError("target_layer is not a sub-module of the model")
            self._target = target_layer
            self.target_name = names[id(target_layer)]

    def _find_and_run(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward with a hook on every module; keeps the last fitting output before the head runs."""
        k = self.classifier.in_features
        found: dict[str, Any] = {}
        head_started = [False]
        handles = []

        def record(name: str) -> Callable[..., None]:
            def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
                if head_started[0] or not isinstance(output, torch.Tensor) or output.dim() != 4:
                    return
                if output.shape[1] == k and output.shape[2] * output.shape[3] > 1:
                    found["name"], found["module"], found["output"] = name, module, output

            return hook

        def start(module: torch.nn.Module, args: Any) -> None:
            head_started[0] = True

        try:
            handles.append(self.classifier.register_forward_pre_hook(start))
            for name, module in self.model.named_modules():
                if module is not self.model and module is not self.classifier:
                    handles.append(module.register_forward_hook(record(name)))
            logits = self.model(images)
        finally:
            for handle in handles:
                handle.remove()
        if "output" not in found:
            raise ValueError(
                f"no layer of the model outputs (B, {k}, h, w) features before its classifier "
                f"({type(self.classifier).__name__}(in_features={k})) runs: the head is not global pooling "
                "and one linear layer; pass target_layer= and classifier="
            )
        self._target, self.target_name = found["module"], found["name"]
        return logits, found["output"]

    def _run(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self._target is None:
            return self._find_and_run(images)
        captured: list[Any] = []

        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            captured.append(output)

        handle = self._target.register_forward_hook(hook)
        try:
            logits = self.model(images)
        finally:
            handle.remove()
        if not captured:
            raise ValueError(f"target_layer {self.target_name!r} did not run in the model's forward")
        features = captured[-1]
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(
                f"target_layer {self.target_name!r} must output (B, K, h, w) features, got {shape}"
            )
        return logits, features

    def forward(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model once: its logits ``(B, C)`` and the raw CAMs of every class ``(B, C, h, w)``.

        Args:
            images: the model's input.

        Returns:
            ``(logits, cams)``.

        Raises:
            ValueError: the model's output is not ``(B, C)`` logits, or the features do not fit the head.
        """
        logits, features = self._run(images)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model must return (B, C) logits, got {shape}")
        head = self.classifier
        cams = cam_class_maps(
            features, head.weight, head.bias if self.bias and head.bias is not None else None
        )
        return logits, cams

    def __call__(
        self, images: Any, classes: torch.Tensor | Literal["predicted"] | None = None
    ) -> torch.Tensor:
        """Raw CAMs of a batch: every class's, or one class's per image.

        Args:
            images: the model's input.
            classes: None for all ``C`` maps; a ``(B,)`` integer tensor (e.g. the labels) for one map per
                image; ``"predicted"`` for the map of the model's top class (``logits.argmax(1)``).

        Returns:
            ``(B, C, h, w)`` or ``(B, 1, h, w)`` raw CAMs (unbounded: normalise them with
            :func:`lowcam.normalize_map` or :func:`lowcam.metrics.prepare_scoremap`).
        """
        logits, cams = self.forward(images)
        if classes is None:
            return cams
        if isinstance(classes, str):
            if classes != "predicted":
                raise ValueError(f"classes must be None, a (B,) tensor or 'predicted', got {classes!r}")
            classes = logits.argmax(1)
        return select_class_map(cams, classes.to(cams.device))


def class_activation_maps(
    model: torch.nn.Module,
    images: Any,
    classes: torch.Tensor | Literal["predicted"] | None = None,
    *,
    target_layer: str | torch.nn.Module | None = None,
    classifier: str | torch.nn.Linear | None = None,
    bias: bool = False,
) -> torch.Tensor:
    """Raw CAMs of ``images`` from an unmodified classifier, in one forward pass (:class:`lowcam.ClassActivationMapper`).

    Finds the layers on every call; build a :class:`lowcam.ClassActivationMapper` once to find them once.

    Args:
        model: a global-average-pooling + linear classifier (torchvision, timm, your own).
        images: the model's input, e.g. ``(B, 3, H, W)``.
        classes: None (every class), a ``(B,)`` integer tensor, or ``"predicted"``.
        target_layer: the feature layer (module or name), or None to find it.
        classifier: the linear head (module or name), or None to find it.
        bias: add the head's bias (CAM leaves it out).

    Returns:
        ``(B, C, h, w)`` raw CAMs, or ``(B, 1, h, w)`` with ``classes``.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        >>> with torch.no_grad():
        ...     maps = class_activation_maps(model.eval(), torch.rand(2, 3, 32, 32), torch.tensor([3, 1]))
        >>> maps.shape
        torch.Size([2, 1, 8, 8])
    """
    mapper = ClassActivationMapper(model, target_layer, classifier, bias=bias)
    return mapper(images, classes)
