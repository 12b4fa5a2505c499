# The README's commands. Everything a fresh machine needs (Python 3.11, Node.js) is installed here.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
# checkov and pycep-parser (the infra/ checks) in a venv of their own: checkov's pins must not move the app's.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: install infra-tools test demo bench package clean

install: $(STAMP) $(NPM_STAMP)

$(STAMP): requirements.txt requirements-publish.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NPM_STAMP): package.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20 or newer (it brings npm) and rerun" >&2; exit 2; }
	npm install --no-audit --no-fund --loglevel=error
	touch $@

$(INFRA_STAMP): requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

infra-tools: $(INFRA_STAMP)

# RETRAINER_INFRA_TOOLS: the infra tests fail (not skip) when the tools are missing.
test: install infra-tools
	RETRAINER_INFRA_TOOLS=$(INFRA_VENV) $(PY) -m pytest -q

demo: install
	$(PY) -m devhost.demo

bench: install
	$(PY) bench/localrun.py
	$(PY) bench/coldstart.py
	$(PY) bench/intake.py    # its burst runs bench/ingest.py
	$(PY) bench/faults.py

# The deployment package as the remote build makes it (app files less .funcignore, pip install -r
# requirements.txt), with its size. PACKAGE_DIR=/tmp/... keeps it out of the checkout.
PACKAGE_DIR ?= build/package
package: install
	$(PY) infra/package.py --out $(PACKAGE_DIR)

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .state build
