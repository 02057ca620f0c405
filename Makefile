# The README's two commands: `make lab` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test test-package test-notebooks bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Open the workbook in JupyterLab, on lesson 00.
# (Jupyter refuses to run as root unless told; containers and workshop VMs often are root.)
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00_start_here.ipynb

## Every test: the package's tests, then nbval over every notebook.
test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 tests
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadscope --nbval-lax --nbval-cell-timeout=120 --nbval-sanitize-with notebooks/sanitize.cfg notebooks

bench: $(STAMP)
	$(BIN)/python -m wslab bench

clean:
	rm -rf $(VENV)
