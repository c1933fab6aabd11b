# Vitrine: `make run` sets up and starts the site; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench chromium clean-data

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch/torchvision are pinned to the builds on this machine's disk (see pyproject.toml).
setup: $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	@$(MAKE) --no-print-directory chromium
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

# Debian chromium for the browser tests; installing it needs root (CI runs as root).
chromium:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && echo "chromium installed"; \
	else echo "NOTE: browser tests need Debian chromium: sudo apt-get install -y chromium"; fi

run: setup
	$(PY) manage.py runsite

test:
	$(PY) -m pytest

bench:
	$(PY) -m bench.run_all

clean-data:
	rm -rf var
