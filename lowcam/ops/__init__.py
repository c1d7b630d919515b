"""Fused Triton implementations of lowcam's components (the ``backend="triton"`` path, an opt-in).

Each module holds one operation: its Triton kernel(s), the launcher and the ``torch.library`` custom ops
(with fake implementations, so that ``torch.compile(fullgraph=True)`` traces through them).

- :mod:`lowcam.ops.entropy`: :func:`~lowcam.ops.entropy.weighted_entropy_loss_triton`, the weighted entropy
  loss and its gradient in one pass over the map.
- :mod:`lowcam.ops.area`: :func:`~lowcam.ops.area.area_loss_triton`, the area loss reading only the
  selected class-map channels.
- :mod:`lowcam.ops.erasing`: :func:`~lowcam.ops.erasing.attentive_erasing_triton`, the forward pass of
  attentive erasing in one launch with Triton's counter-based RNG.

This package is a leaf: it imports nothing from the components. The components pass what the kernels
need (constants, ranked class indices, parameters resolved for the map size), receive unreduced values
and apply their own reduction; attentive erasing's backward pass lives with its torch backend in
:mod:`lowcam.erasing`.

The modules import Triton, so the components import them lazily, only when the Triton backend is used:
``import lowcam`` works without Triton. Kernels run on CUDA tensors, or on CPU tensors through Triton's
interpreter when ``TRITON_INTERPRET=1`` is set before a module of this package is imported.
"""

__all__: list[str] = []  # the modules are imported one by one, lazily (they import Triton)
