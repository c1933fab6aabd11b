"""The SECRET_KEY used when the environment sets none: random, made on first run, kept in the
data dir (mode 0600) and reused, so sessions survive restarts and no published default exists.

No Django here: settings.py calls this before Django is configured.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 50  # what `manage.py check --deploy` (security.W009) asks for


def load_or_create_secret_key(path: Path) -> str:
    """The key in `path`, creating it first if needed.

    Web workers and Celery workers may start at the same moment: each writes a complete
    candidate to a temporary file and hard-links it into place; a link never replaces an
    existing file, so exactly one candidate wins and every process reads that one.
    """
    key = _read(path)
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(64) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process won the race: use its key
    finally:
        candidate.unlink(missing_ok=True)
    key = _read(path)
    if not key:
        raise RuntimeError(f"{path} exists but holds no secret key; delete it or set SECRET_KEY")
    return key


def _read(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return ""
    if key and len(key) < MIN_LENGTH:
        raise RuntimeError(
            f"the secret key in {path} is shorter than {MIN_LENGTH} characters; "
            "delete the file to have a new one made, or set SECRET_KEY"
        )
    return key
