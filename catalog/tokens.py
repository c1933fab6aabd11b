"""API tokens for the bulk API: `Authorization: Bearer <token>`, staff users only.

A token is shown once, when it is made (the admin's *API tokens → Add*); only its sha256 is
stored. Requests carrying a token are authenticated by it alone: these endpoints never read
the session cookie, so a browser's ambient login cannot be used against them and they need no
CSRF token (csrf_exempt applies to nothing else).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta
from typing import Any, Callable

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from catalog.models import ApiToken

PREFIX = "vit_"
# last_used_at is written at most this often per token: one UPDATE per request would cost
# more than the requests it records.
LAST_USED_RESOLUTION = timedelta(minutes=1)

View = Callable[..., HttpResponse]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Make a token for `user`; return the stored row and the token itself (never stored)."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, key_hash=hash_token(token), prefix=token[:10])
    return row, token


def revoke(tokens: Any) -> int:
    """Revoke the tokens of a queryset that are still active; return how many."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


class AuthError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def authenticate(request: HttpRequest) -> ApiToken:
    """The active token of a staff user that the request carries; AuthError 401/403 otherwise."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise AuthError(
            "authentication required: send 'Authorization: Bearer <token>' "
            "(tokens are made in the admin, under API tokens)",
            401,
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("the Authorization header must be 'Bearer <token>'", 401)
    row = ApiToken.objects.select_related("user").filter(key_hash=hash_token(token)).first()
    if row is None:
        raise AuthError("unknown API token", 401)
    if not row.is_active:
        raise AuthError(f"API token {row.prefix}… was revoked", 401)
    if not row.user.is_active:
        raise AuthError("the API token's user is deactivated", 401)
    if not row.user.is_staff:
        raise AuthError(f"user {row.user.get_username()!r} is not staff: the bulk API is for staff only", 403)
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def token_required(view: View) -> View:
    """Answer 401/403 JSON (with WWW-Authenticate) unless a staff user's token is given; the
    view gets it as request.api_token and request.user."""

    @csrf_exempt  # bearer tokens are not sent by browsers on their own: no CSRF to forge
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            token = authenticate(request)
        except AuthError as exc:
            response = JsonResponse({"error": str(exc)}, status=exc.status)
            if exc.status == 401:
                response["WWW-Authenticate"] = 'Bearer realm="vitrine"'
            return response
        # marks the request for the view, as Django's auth middleware sets request.user
        request.api_token = token  # type: ignore[attr-defined]
        request.user = token.user
        return view(request, *args, **kwargs)

    return wrapped
