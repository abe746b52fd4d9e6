"""An operator manages API tokens: `signoff tokens create|list|revoke|rotate` and the admin
API /api/v1/tokens. Names are unique among live tokens, secrets are shown once and never
listed, and a revoked or rotated-out secret is refused by the API and the dashboard within
a second, whichever process revoked it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
from support import ROOT, ServiceProcess, dashboard_sign_in

# Revocations are read from the token table: both stores.
STORES = ("sqlite", "postgresql")

REFUSED_WITHIN_SECONDS = 1.0


def signoff(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "tokens", *args, "--db", service.db_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def whoami(service: ServiceProcess, token: str) -> int:
    with service.client(token) as client:
        return client.get("/whoami").status_code


def refused_after(check: Callable[[], bool], limit: float) -> float:
    """Seconds until `check()` holds, polling; fails past `limit`."""
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"still accepted after {elapsed:.2f} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def admin(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("admin", f"root-{service.port}"))


# The command line.


def test_create_prints_only_the_secret_and_a_taken_name_exits_1(service: ServiceProcess) -> None:
    made = signoff(service, "create", "--role", "approver", "--name", "cli-carla")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("so_") and "\n" not in secret
    assert whoami(service, secret) == 200

    again = signoff(service, "create", "--role", "approver", "--name", "cli-carla")
    assert again.returncode == 1
    assert again.stdout == ""
    assert "cli-carla" in again.stderr and "exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_list_shows_every_token_and_never_a_secret(service: ServiceProcess) -> None:
    secret = signoff(service, "create", "--role", "auditor", "--name", "cli-lister").stdout.strip()
    signoff(service, "create", "--role", "auditor", "--name", "cli-temp", "--expires-in", "2h")
    listed = signoff(service, "list")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout and secret[10:] not in listed.stdout
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "auditor" in lines["cli-lister"] and "live" in lines["cli-lister"]
    assert listed.stdout.splitlines()[0].split()[:4] == ["NAME", "ROLE", "PREFIX", "STATE"]
    # The expiring one says when.
    cells = lines["cli-temp"].split()
    assert cells[6].endswith("Z") and cells[6] > cells[4]  # EXPIRES after CREATED


@pytest.mark.parametrize("bad", ["soon", "-5m", "0", "99999d", "5x"])
def test_a_bad_expiry_exits_2_naming_the_flag(service: ServiceProcess, bad: str) -> None:
    made = signoff(service, "create", "--role", "agent", "--name", "cli-bad", f"--expires-in={bad}")
    assert made.returncode == 2
    assert made.stderr.strip().splitlines()[-1].startswith("signoff: --expires-in: ")
    assert made.stdout == ""


def test_revoke_from_the_command_line_is_refused_by_the_running_service_within_1_second(
    service: ServiceProcess,
) -> None:
    secret = signoff(service, "create", "--role", "approver", "--name", "cli-rita").stdout.strip()
    assert whoami(service, secret) == 200  # now in the service's token cache
    revoked = signoff(service, "revoke", "cli-rita")
    assert revoked.returncode == 0, revoked.stderr
    refused_after(lambda: whoami(service, secret) == 401, REFUSED_WITHIN_SECONDS)
    assert "revoked" in signoff(service, "list").stdout


def test_rotate_prints_a_new_secret_and_the_old_one_stops_within_1_second(
    service: ServiceProcess,
) -> None:
    old = signoff(service, "create", "--role", "gateway", "--name", "cli-gw").stdout.strip()
    assert whoami(service, old) == 200
    rotated = signoff(service, "rotate", "cli-gw")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("so_") and new != old
    refused_after(lambda: whoami(service, old) == 401, REFUSED_WITHIN_SECONDS)
    with service.client(new) as client:
        assert client.get("/whoami").json() == {"name": "cli-gw", "role": "gateway"}


@pytest.mark.parametrize("verb", ["revoke", "rotate"])
def test_revoking_or_rotating_an_unknown_name_exits_1(service: ServiceProcess, verb: str) -> None:
    done = signoff(service, verb, "nobody-by-this-name")
    assert done.returncode == 1
    assert "nobody-by-this-name" in done.stderr and "Traceback" not in done.stderr


# The admin API.


def stored_tokens(admin: httpx.Client) -> list[dict[str, object]]:
    """The tokens as stored, without `last_used_at`: the admin's own use of the API is
    flushed in the background and may land between two listings."""
    return [
        {key: value for key, value in token.items() if key != "last_used_at"}
        for token in admin.get("/tokens").json()
    ]


def test_forged_token_bodies_are_refused_and_nothing_is_stored(admin: httpx.Client) -> None:
    before = stored_tokens(admin)
    bodies = [
        {"name": "has space", "role": "approver"},
        {"name": "root", "role": "superuser"},
        {"name": "x" * 129, "role": "approver"},
        {"name": "ok-name", "role": "approver", "expires_in_seconds": -5},
        {"name": "ok-name", "role": "approver", "token_hash": "0" * 64},
    ]
    for body in bodies:
        refused = admin.post("/tokens", json=body)
        assert 400 <= refused.status_code < 500, (body, refused.text)
        assert refused.json()["error"]["code"]
    surrogate = admin.post(
        "/tokens",
        content=b'{"name": "\\ud800", "role": "approver"}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422
    assert stored_tokens(admin) == before


def test_an_admin_creates_lists_and_revokes_over_the_api(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    made = admin.post("/tokens", json={"name": "api-amy", "role": "approver"})
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    assert made.json()["state"] == "live" and made.json()["expires_at"] is None
    assert whoami(service, secret) == 200

    taken = admin.post("/tokens", json={"name": "api-amy", "role": "auditor"})
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "name_taken"

    listed = admin.get("/tokens")
    assert listed.status_code == 200
    assert secret not in listed.text and "token_hash" not in listed.text
    amy = [t for t in listed.json() if t["name"] == "api-amy"]
    assert [t["state"] for t in amy] == ["live"]
    assert set(amy[0]) == {
        "name",
        "role",
        "prefix",
        "state",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    }

    gone = admin.delete("/tokens/api-amy")
    assert gone.status_code == 200, gone.text
    # The same process: refused on the very next call.
    assert whoami(service, secret) == 401
    assert admin.delete("/tokens/api-amy").status_code == 404


def test_rotating_over_the_api_refuses_the_old_secret_at_once(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    old = admin.post("/tokens", json={"name": "api-gw", "role": "gateway"}).json()["token"]
    assert whoami(service, old) == 200
    rotated = admin.post("/tokens/api-gw/rotate")
    assert rotated.status_code == 200, rotated.text
    assert whoami(service, old) == 401
    assert whoami(service, rotated.json()["token"]) == 200


def test_an_expiring_token_shows_its_expiry(admin: httpx.Client) -> None:
    made = admin.post(
        "/tokens", json={"name": "api-brief", "role": "auditor", "expires_in_seconds": 3600}
    )
    assert made.status_code == 201, made.text
    assert made.json()["expires_at"] is not None


def test_a_revoked_token_is_signed_out_of_the_dashboard_within_1_second(
    service: ServiceProcess, admin: httpx.Client
) -> None:
    secret = admin.post("/tokens", json={"name": "dash-dora", "role": "approver"}).json()["token"]
    browser = dashboard_sign_in(service, secret)
    assert browser.http.get("/").status_code == 200
    signoff(service, "revoke", "dash-dora")

    def signed_out() -> bool:
        page = browser.http.get("/", follow_redirects=False)
        return page.status_code in (302, 303, 401)

    refused_after(signed_out, REFUSED_WITHIN_SECONDS)


@pytest.mark.parametrize("role", ["agent", "gateway", "approver", "auditor"])
def test_only_admins_manage_tokens(service: ServiceProcess, role: str) -> None:
    with service.client(service.token(role, f"not-admin-{role}-{service.port}")) as client:
        for answer in (
            client.get("/tokens"),
            client.post("/tokens", json={"name": f"sneaky-{role}", "role": "admin"}),
            client.delete(f"/root-{service.port}"),
            client.delete(f"/tokens/root-{service.port}"),
            client.post(f"/tokens/root-{service.port}/rotate"),
        ):
            if answer.request.url.path.startswith("/api/v1/tokens"):
                assert answer.status_code == 403, answer.text
                assert answer.json()["error"]["code"] == "forbidden"


def test_no_token_gets_401(service: ServiceProcess) -> None:
    with service.client() as anonymous:
        assert anonymous.get("/tokens").status_code == 401
        assert anonymous.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"name": "ok-name", "role": "root"},
        {"name": "", "role": "agent"},
        {"name": "-leading-dash", "role": "agent"},
        {"name": "x" * 129, "role": "agent"},
        {"name": "ok-name", "role": "agent", "expires_in_seconds": 0},
        {"name": "ok-name", "role": "agent", "expires_in_seconds": -3},
        {"name": "ok-name", "role": "agent", "expires_in_seconds": 10**12},
        {"role": "agent"},
        ["not", "an", "object"],
    ],
)
def test_malformed_creates_get_a_4xx_and_make_nothing(admin: httpx.Client, body: object) -> None:
    before = len(admin.get("/tokens").json())
    answer = admin.post("/tokens", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert "error" in answer.json()
    assert len(admin.get("/tokens").json()) == before


def test_list_says_when_a_token_was_last_used(service: ServiceProcess, admin: httpx.Client) -> None:
    secret = admin.post("/tokens", json={"name": "api-user", "role": "auditor"}).json()["token"]

    def last_used() -> str | None:
        (row,) = [t for t in admin.get("/tokens").json() if t["name"] == "api-user"]
        return row["last_used_at"]

    assert last_used() is None
    assert whoami(service, secret) == 200
    refused_after(lambda: last_used() is not None, 5.0)


def test_an_expired_token_is_refused_by_the_api_and_the_dashboard_within_1_second(
    service: ServiceProcess,
) -> None:
    made = signoff(
        service, "create", "--role", "approver", "--name", "brief-bo", "--expires-in", "2s"
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert whoami(service, secret) == 200  # now cached, too
    browser = dashboard_sign_in(service, secret)

    time.sleep(2)
    refused_after(lambda: whoami(service, secret) == 401, REFUSED_WITHIN_SECONDS)
    with service.client(secret) as client:
        assert client.get("/whoami").json()["error"]["code"] == "token_expired"
    assert browser.http.get("/", follow_redirects=False).status_code in (302, 303, 401)
    assert "expired" in signoff(service, "list").stdout
    # The name is free again once its token expired.
    assert signoff(service, "create", "--role", "approver", "--name", "brief-bo").returncode == 0
