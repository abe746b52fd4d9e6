"""While a secret is rotated the variable holds the new and the old one: each delivery
carries one v1 per secret, and a receiver holding either accepts it (with the README's
check); one holding neither, or a stale timestamp, does not."""

from __future__ import annotations

import time

from webhook_receiver import verify_signature

from approvals.webhooks.signing import header_value, secrets_of

NEW = "new-secret-" + "n" * 24
OLD = "old-secret-" + "o" * 24


def test_during_a_rotation_either_secret_verifies_and_no_other() -> None:
    body = b'{"event_id":"evt_1","type":"request.created"}'
    secrets = secrets_of(f"{NEW}, {OLD}")
    assert secrets == [NEW, OLD]
    header = header_value(secrets, int(time.time()), body)
    assert header.count("v1=") == 2
    assert verify_signature(header, body, NEW)
    assert verify_signature(header, body, OLD)
    assert not verify_signature(header, body, "another-secret-" + "x" * 20)


def test_an_old_or_malformed_header_is_refused() -> None:
    body = b"{}"
    stale = header_value([NEW], int(time.time()) - 3600, body)
    assert not verify_signature(stale, body, NEW)
    for header in ("", "t=", "v1=abc", f"t={int(time.time())}", "t=x,v1=y", "garbage"):
        assert not verify_signature(header, body, NEW), header
