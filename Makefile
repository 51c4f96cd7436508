# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch; override (e.g. TORCH_SPEC="torch>=2.2,<2.14") on a GPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/denoiselab demo --out demo-output

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/toy2d.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
