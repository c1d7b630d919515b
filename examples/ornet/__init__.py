"""The ORNet pipeline of ``examples/train_ornet.py``, built on lowcam's public API only (its modules are
mapped in CONTRIBUTING.md: ``recipe`` holds every method decision, ``models`` only architecture)."""
