"""The ORNet pipeline of ``examples/train_ornet.py``, built on lowcam's public API only.

Modules:

- :mod:`ornet.recipe`: ORNet itself, one short function per stage's loss, and every method decision;
  every lowcam component is built here.
- :mod:`ornet.stages`: each stage's networks and optimiser around the recipe.
- :mod:`ornet.training`: the shared training loop, checkpoints per epoch, ``--resume``, epoch selection.
- :mod:`ornet.runtime`: the run's context, seeds, determinism, data loading and loaders.
- :mod:`ornet.evaluation`: both protocols on every map, ``metrics.json``, score maps on disk.
- :mod:`ornet.report`: the results table and the PNG grids.
- :mod:`ornet.config`: the nested configuration, YAML loading and command-line overrides.
- :mod:`ornet.checks`: the config validated against the data set, ``--resume`` against saved configs.
- :mod:`ornet.data`, :mod:`ornet.imagenet`: readers for CUB-200-2011, the wsolevaluation layout and ILSVRC
  2012, with errors that name the file and line.
- :mod:`ornet.transforms`: resize / crop / flip that move the boxes with the image.
- :mod:`ornet.models`: architectures only: torchvision models, the one weight loader, the ResNet stem
  split, ORNet's networks and the CAM network (also the model of ``cam_with_lowcam.py``).
- :mod:`ornet.checkpoint`, :mod:`ornet.files`: atomic checkpoints and output files.
- :mod:`ornet.pictures`, :mod:`ornet.distributed`, :mod:`ornet.logs`: PNG grids, torchrun helpers, the
  JSONL log.
"""
