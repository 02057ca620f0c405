# The README's two commands: `make lab` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# More options for jupyter lab, e.g. make lab LAB_ARGS="--no-browser --ServerApp.port=9000"
LAB_ARGS ?=

.PHONY: lab test learner bench clean node

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The Node.js designs' dependencies (ws, pinned in node/package-lock.json), when
## Node.js 18 or later is here; without it, nothing to do and nothing fails (the
## Node tests skip, saying what to install).
NODE_STAMP := node/node_modules/.installed

node:
	@if node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null; then \
		$(MAKE) --no-print-directory $(NODE_STAMP); \
	else \
		echo "Node.js 18 or later not found: the Node designs (node/) and their tests are skipped"; \
	fi

$(NODE_STAMP): node/package.json node/package-lock.json
	cd node && npm ci --silent --no-audit --no-fund
	touch $(NODE_STAMP)

## Open the workbook in JupyterLab, on lesson 00.
# (Jupyter refuses to run as root unless told; containers and workshop VMs often are root.
# The URL it prints opens lesson 00 too, for a machine without a browser of its own.)
lab: $(STAMP) node
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) \
		--LabApp.default_url=/lab/tree/00_start_here.ipynb $(LAB_ARGS) notebooks/00_start_here.ipynb

NBVAL := --nbval-lax --nbval-cell-timeout=120 --nbval-sanitize-with notebooks/sanitize.cfg

## Every test, in one pytest session (its workers share the load; each notebook
## runs whole on one of them, see conftest.py): the package's tests, nbval over
## every notebook, and over the learner edition (where only the checker cells
## after the stubbed solutions may raise; a notebook without an exercise is the
## same file in both, and is checked once).
test: $(STAMP) node
	rm -rf .learner-check && $(BIN)/python -m wslab learner .learner-check > /dev/null
	for f in .learner-check/*.ipynb; do cmp -s $$f notebooks/$${f##*/} && rm $$f; done; true
	$(BIN)/python -m pytest -p no:cacheprovider -n 3 $(NBVAL) tests notebooks .learner-check
	rm -rf .learner-check

## The learner edition, for a workshop: learner/*.ipynb with the exercises to write.
learner: $(STAMP)
	rm -rf learner && $(BIN)/python -m wslab learner learner

bench: $(STAMP)
	$(BIN)/python -m wslab bench

clean:
	rm -rf $(VENV) learner .learner-check node/node_modules
