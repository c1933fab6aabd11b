# Vitrine: `make run` sets up and starts the site; `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-faults bench bench-100k bench-1m bench-reembed clean-bench-scale chromium clean-data eval

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch/torchvision are pinned to the builds on this machine's disk (see pyproject.toml).
# --no-compile: pip would byte-compile every module of every package (torch's thousands) up
# front, 32 of a fresh install's 79 s on 2 cores; Python compiles the modules it imports
# when it first imports them (about 4 s more at the site's first start).
setup: $(PY)
	$(PY) -m pip install --quiet --no-compile -e ".[dev]"
	@$(MAKE) --no-print-directory chromium
	@$(MAKE) --no-print-directory debian-data
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

# Debian chromium for the browser tests; installing it needs root (CI runs as root).
chromium:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && echo "chromium installed"; \
	else echo "NOTE: browser tests need Debian chromium: sudo apt-get install -y chromium"; fi

# Debian data for the evaluation suite (scripts/build_eval_suite.py) and WordNet paraphrases:
# about 195 MB to download (openclipart-png 131, dataset-fashion-mnist 31, unicode-cldr-core 17,
# fonts-noto-color-emoji 10, wordnet-base 6.5). Installing needs root (CI runs as root).
DEBIAN_DATA := wordnet-base fonts-noto-color-emoji unicode-cldr-core dataset-fashion-mnist openclipart-png
.PHONY: debian-data eval-data
debian-data:
	@missing=$$(for p in $(DEBIAN_DATA); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "debian data: installed"; \
	elif [ "$$(id -u)" = "0" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null && echo "debian data installed:" $$missing; \
	else echo "NOTE: the evaluation suite needs Debian data: sudo apt-get install -y" $$missing; fi

# The evaluation suite's catalogues and queries: var/evalsuite/{fashion,emoji,clipart} (about a minute).
eval-data: debian-data
	$(PY) scripts/build_eval_suite.py --out var/evalsuite

# The evaluation suite (docs/evaluation.md): per catalogue, keyword search, the untrained baseline
# and a trained GRU and MiniLM model (through the activation gate), one table. Runs in its own
# data dir (var/eval-db), never on the site's catalogue. EVAL_ARGS="--catalogues fashion" etc.
EVAL_DB := $(CURDIR)/var/eval-db
eval: eval-data
	VITRINE_DATA_DIR=$(EVAL_DB) $(PY) manage.py migrate --noinput -v 0
	VITRINE_DATA_DIR=$(EVAL_DB) $(PY) manage.py eval_suite --wipe --suite var/evalsuite --markdown var/eval-results.md $(EVAL_ARGS)

run: setup
	$(PY) manage.py runsite

test: setup
	$(PY) -m pytest

# The slow fault-injection tests (tests/integration/test_faults.py, about 20 minutes on 2 cores).
test-faults: setup
	$(PY) -m pytest -m faults --timeout=1800 tests/integration/test_faults.py

bench:
	$(PY) -m bench.run_all

# Search at catalogue scale (bench/catalogue_scale.py, docs/benchmarks.md section 10): the API
# next to the raw pgvector query at 100k and 1M products, recall, index choices and builds.
# Each keeps its database (var/bench-100k: ~3 GB; var/bench-1m: ~25 GB) and reuses it;
# `make clean-bench-scale` removes both. 100k: ~10 min the first time; 1M: about an hour and a
# half on 2 cores (most of it loading and building the indexes), then ~10 min a run.
BENCH_1M_BUILD_MEMORY ?= 5GB
bench-100k:
	$(PY) -m bench.catalogue_scale --products 100000 \
		--variants vector:text_vec,vector:image_vec,binary:text_vec,binary:image_vec --build-settings 64MB:1,1GB:0,1GB:1 --build-storage vector

bench-1m:
	HNSW_BUILD_MEMORY=$(BENCH_1M_BUILD_MEMORY) $(PY) -m bench.catalogue_scale --products 1000000 \
		--variants vector:text_vec
	HNSW_BUILD_MEMORY=$(BENCH_1M_BUILD_MEMORY) $(PY) -m bench.catalogue_scale --products 1000000 \
		--variants binary:text_vec,binary:image_vec --variants-only

# Re-embedding 70,000 products under a newly trained joint model, with a real embed worker
# (bench/reembed_scale.py, docs/benchmarks.md section 11): about 12 minutes on 2 busy cores; its
# database (var/bench-70k, ~1 GB) is reused by later runs and removed by clean-bench-scale.
bench-reembed:
	$(PY) -m bench.reembed_scale --products 70000

clean-bench-scale:
	rm -rf var/bench-100k var/bench-1m var/bench-70k

clean-data:
	rm -rf var
