"""Secure by default: production HTTPS settings from the environment (`check --deploy` clean),
plain http in development, who the client is, and the admin login throttled."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.test import Client, RequestFactory

from searchsite.security import client_ip, client_key

REPO = Path(__file__).resolve().parents[2]

# What docker-compose.yml and .env.example set for production behind an HTTPS proxy.
PRODUCTION_ENV = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "shop.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
}
SETTING_VARS = {
    *PRODUCTION_ENV,
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "VITRINE_DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "TRUSTED_PROXY_COUNT",
    "DJANGO_SETTINGS_MODULE",
}


def settings_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment with only the given settings variables, for the production settings module.

    The database and Redis URLs point at closed ports: nothing here connects to them, and no
    embedded Postgres is started."""
    # DJANGO_*: e.g. DJANGO_ALLOW_ASYNC_UNSAFE, which the browser tests set in this process
    base = {k: v for k, v in os.environ.items() if k not in SETTING_VARS and not k.startswith("DJANGO_")}
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "searchsite.settings",
            "VITRINE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": "postgres://vitrine:vitrine@127.0.0.1:9/vitrine",
            "REDIS_URL": "redis://127.0.0.1:9/0",
        }
    )
    base.update(env)
    return base


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=settings_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- production settings ---


def test_check_deploy_is_clean_with_the_production_environment(tmp_path):
    result = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_the_development_defaults_lack(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_development_defaults_serve_plain_http(db, client):
    response = client.get("/api/categories")
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response


def test_production_settings_redirect_to_https_and_send_hsts(db, client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    plain = client.get("/api/categories")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/api/categories"
    proxied = client.get("/api/categories", headers={"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    # health checks from inside the deployment are not redirected
    assert client.get("/healthz").status_code != 301


# --- the client's address ---


def request(remote: str = "10.0.0.2", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request(forwarded="203.0.113.7")) == "10.0.0.2"


def test_behind_one_proxy_the_address_it_appended_counts(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request(forwarded="203.0.113.7")) == "203.0.113.7"
    # A client writing its own X-Forwarded-For cannot choose its address: the proxy appends.
    assert client_ip(request(forwarded="1.2.3.4, 203.0.113.7")) == "203.0.113.7"


def test_behind_two_proxies(settings):
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request(forwarded="1.2.3.4, 203.0.113.7, 10.0.0.9")) == "203.0.113.7"


def test_missing_or_garbled_forwarded_for_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request()) == "10.0.0.2"
    assert client_ip(request(forwarded="not-an-address")) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request(forwarded="203.0.113.7")) == "10.0.0.2"


def test_ipv6_clients_share_their_slash_64(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_key(request("2001:db8:1:2:aaaa::1")) == client_key(request("2001:db8:1:2:bbbb::9"))
    assert client_key(request("2001:db8:1:3::1")) != client_key(request("2001:db8:1:2::1"))
    assert client_key(request("203.0.113.7")) == "203.0.113.7"


# --- admin login throttling ---


def login(client: Client, password: str, ip: str):
    return client.post("/admin/login/?next=/admin/", {"username": "alice", "password": password}, REMOTE_ADDR=ip)


def test_admin_login_locks_out_after_five_failures(db, django_user_model, settings):
    django_user_model.objects.create_superuser("alice", "alice@example.com", "the-right-password")
    attacker = Client()
    for attempt in range(1, 5):
        response = login(attacker, f"guess-{attempt}", "203.0.113.7")
        assert response.status_code == 200 and "Please enter the correct username" in response.content.decode()
    fifth = login(attacker, "guess-5", "203.0.113.7")
    assert fifth.status_code == 429
    sixth = login(attacker, "the-right-password", "203.0.113.7")
    page = sixth.content.decode()
    assert sixth.status_code == 429
    assert "Account locked: too many failed logins (5)" in page and "Try again in 15 minutes" in page
    assert sixth["Retry-After"] == str(15 * 60)
    assert "_auth_user_id" not in attacker.session  # the right password did not get in

    # The lock is on alice from that address: alice from her own address still gets in,
    # and the admin lists the lockout.
    alice = Client()
    response = login(alice, "the-right-password", "198.51.100.20")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    listing = alice.get("/admin/axes/accessattempt/").content.decode()
    assert "203.0.113.7" in listing and "alice" in listing


def test_lockout_is_per_client_address_behind_a_trusted_proxy(db, django_user_model, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    django_user_model.objects.create_superuser("alice", "alice@example.com", "the-right-password")
    attacker = Client()
    for attempt in range(5):
        attacker.post(
            "/admin/login/",
            {"username": "alice", "password": f"guess-{attempt}"},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="203.0.113.7",
        )
    # Same proxy, another shopper: not locked out.
    response = Client().post(
        "/admin/login/?next=/admin/",
        {"username": "alice", "password": "the-right-password"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.20",
    )
    assert response.status_code == 302


def test_in_process_logins_still_work(db, django_user_model, client):
    django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")
    assert client.login(username="alice", password="pw")
