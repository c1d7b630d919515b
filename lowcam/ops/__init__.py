"""Fused Triton implementations of lowcam's components (the ``backend="triton"`` path).

Each module holds one operation: its Triton kernel(s), the launcher, the ``torch.library`` custom ops
(with fake implementations, so that ``torch.compile(fullgraph=True)`` traces through them) and the
:class:`torch.autograd.Function` that ties forward and backward together.

- :mod:`lowcam.ops.entropy`: :func:`~lowcam.ops.entropy.weighted_entropy_triton`, the weighted entropy
  loss and its gradient in one pass over the map.
- :mod:`lowcam.ops.area`: :func:`~lowcam.ops.area.area_loss_triton`, the area loss reading only the
  selected class-map channels.
- :mod:`lowcam.ops.erasing`: :func:`~lowcam.ops.erasing.attentive_erasing_triton`, attentive erasing in
  one launch with Triton's counter-based RNG.
- :mod:`lowcam.ops.erasing_cpu`: not a kernel: the torch backend of attentive erasing as one opaque custom
  op, which ``torch.compile`` calls on CPU instead of generating slower code for it (no Triton import).

The modules import Triton, so the components import them lazily, only when the Triton backend is used:
``import lowcam`` works without Triton. Kernels run on CUDA tensors, or on CPU tensors through Triton's
interpreter when ``TRITON_INTERPRET=1`` is set before a module of this package is imported.
"""
