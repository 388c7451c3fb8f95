# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RCP := $(VENV)/bin/rcp
export RCP_DATA_DIR ?= $(CURDIR)/data
DEB_TEST_PACKAGES := orthanc orthanc-dicomweb chromium dcmtk fonts-dejavu-core nginx docker-compose postgresql-client

.PHONY: run test test-fast install install-test debs lint typecheck bench clean

$(VENV)/.installed: pyproject.toml setup.py media/wire.c media/wire_build.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test debs

## Debian packages the tests start for real (Orthanc + DICOMweb, headless Chromium, dcmtk, nginx in front of two nodes,
## docker-compose to check deploy/compose.yaml, pg_dump for rcp backup); installed when missing.
debs:
	@missing=""; for p in $(DEB_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(RCP) migrate
	$(RCP) demo
	@echo "Serving on http://127.0.0.1:8000 (Ctrl-C to stop)"
	$(RCP) serve --host 127.0.0.1 --port 8000

test: install-test
	$(VENV)/bin/pytest -q

## The inner loop: no browser, Orthanc, PostgreSQL or Redis, no soak tests (markers in pyproject.toml).
## Three workers on two cores (the fast tests wait on sockets and child processes as much as they compute);
## each worker has its own database, data folder and servers, so they never meet.
test-fast: $(VENV)/.installed-test
	$(VENV)/bin/pytest -q -n 3 --dist worksteal -m "not browser and not orthanc and not postgres and not redis and not slow"

lint:
	$(VENV)/bin/ruff check rcp media tests bench

typecheck:
	$(VENV)/bin/mypy

## The media benchmark compares with Janus (Debian's SFU) carrying the same load on loopback.
bench: install-test
	@dpkg -s janus >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq janus >/dev/null; }
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache media/_wire.*
