"""Settings for the test suite: the production settings, with test defaults for the environment.

Only defaults: every variable can still be set from outside, exactly as in production.
"""

import os

# The machine's Redis (CI has one on 6379), on a database of the tests' own; a short
# visibility timeout so a killed worker's task comes back within the test.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_VISIBILITY_TIMEOUT", "10")
# ResNet50 has no offline weights here; ask for the backbone that exists instead of
# exercising the (loud) fallback in every test. tests/embeddings covers the fallback.
os.environ.setdefault("EMBEDDINGS_IMAGE_BACKBONE", "efficientnet_lite0")
os.environ.setdefault("EMBED_BATCH_SIZE", "16")
# Distillation on a few hundred WordNet texts: the code path, at test speed.
os.environ.setdefault("EMBEDDINGS_DISTILL_CORPUS", "300")
os.environ.setdefault("GATE_PROBES_PER_KIND", "10")
# The suite and the browser tests search far faster than a shopper; tests/catalog/test_ratelimit.py
# lowers the limits to prove the 429.
os.environ.setdefault("SEARCH_RATE_LIMIT", "100000/m")
os.environ.setdefault("PHOTO_SEARCH_RATE_LIMIT", "100000/m")

from searchsite.settings import *  # noqa: E402,F403
from searchsite.settings import CACHES  # noqa: E402

# Test runs may share one Redis database: each keeps its own rate-limit counters.
CACHES["default"]["KEY_PREFIX"] = f"vitrine-test-{os.getpid()}"
if "search" in CACHES:  # the search caches' shared level (off in tests unless a test turns it on)
    CACHES["search"]["KEY_PREFIX"] = f"vitrine-search-test-{os.getpid()}"
