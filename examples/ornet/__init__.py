"""The ORNet pipeline of ``examples/train_ornet.py``, built on lowcam's public API only.

Modules:

- :mod:`ornet.recipe`: ORNet itself, one short function per stage's loss; every lowcam component is
  built here.
- :mod:`ornet.stages`: each stage's networks and optimiser around the recipe.
- :mod:`ornet.training`: the shared training loop, checkpoints per epoch, ``--resume``, epoch selection.
- :mod:`ornet.runtime`: the run's context, seeds, determinism, data loading and loaders.
- :mod:`ornet.evaluation`: both protocols on every map, ``metrics.json``, score maps on disk.
- :mod:`ornet.report`: the results table and the PNG grids.
- :mod:`ornet.config`: the nested configuration, YAML loading and command-line overrides.
- :mod:`ornet.checks`: the config validated against the data set, ``--resume`` against saved configs.
- :mod:`ornet.data`: readers for CUB-200-2011 and ILSVRC 2012, with errors that name the file and line.
- :mod:`ornet.transforms`: resize / crop / flip that move the boxes with the image.
- :mod:`ornet.models`: torchvision models, pretrained weights, the ResNet stem split, ORNet's networks.
- :mod:`ornet.checkpoint`, :mod:`ornet.files`: atomic checkpoints and output files.
- :mod:`ornet.pictures`, :mod:`ornet.distributed`, :mod:`ornet.logs`: PNG grids, torchrun helpers, the
  JSONL log.
"""
