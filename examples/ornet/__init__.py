"""The ORNet pipeline of ``examples/train_ornet.py``, built on lowcam's public API only.

Modules:

- :mod:`ornet.config`: the typed configuration, YAML loading and command-line overrides.
- :mod:`ornet.data`: readers for CUB-200-2011 and ILSVRC 2012, with errors that name the file and line.
- :mod:`ornet.transforms`: resize / crop / flip that move the boxes with the image.
- :mod:`ornet.models`: torchvision models, pretrained weights, the ResNet stem split, ORNet's networks.
- :mod:`ornet.engine`: the training loops of every stage and the evaluation.
- :mod:`ornet.checkpoint`: atomic checkpoints with RNG states, loaded with ``weights_only=True``.
- :mod:`ornet.pictures`: PNG grids of maps with predicted and ground-truth boxes.
- :mod:`ornet.distributed`: torchrun / DistributedDataParallel helpers.
- :mod:`ornet.logs`: the JSONL log and optional TensorBoard.
"""
