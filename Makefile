# Set-up and checks for lowcam. `make test` and `make demo` work on a fresh machine: they create .venv,
# install torch (TORCH_SPEC: the pair that imports together on this kind of machine) and the project.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
EXTRAS ?= test,examples,dev

.PHONY: install test lint unit doctest demo bench clean

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

test: lint unit doctest

demo: install
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) dist build site .pytest_cache .mypy_cache .ruff_cache
