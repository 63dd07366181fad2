# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install gouache, generate images with the built-in model into outputs/
#   make test   create .venv if missing, install with test extras, run the whole suite (two processes: pytest-xdist,
#               a module's tests in one of them, in order)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU torch is installed first when the venv has none, so pip does not pull CUDA packages;
# a venv that already has a torch (CUDA or not) keeps it.
TORCH_SPEC ?= torch==2.13.*

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/gouache generate "a yellow circle on a blue background" --seed 1 --batch-size 8 --grid --out outputs/demo
	@echo "The images and their grid are in outputs/demo/ (each PNG carries its parameters: $(BIN)/gouache info FILE)"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf $(VENV) outputs .pytest_cache
