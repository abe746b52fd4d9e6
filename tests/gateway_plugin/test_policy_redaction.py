"""Masking arguments for humans and logs, and the hash that binds an approval to one call."""

from __future__ import annotations

import hashlib

from gateway_plugin.policy import canonical_arguments_hash, redact_arguments


def test_secret_looking_keys_are_always_masked() -> None:
    arguments = {
        "url": "https://example.com",
        "password": "hunter2",
        "DB_PASSWD": "x",
        "accessToken": "t",
        "client-secret": "s",
        "api_key": "k",
        "X-Api-Key": "k2",
        "Authorization": "Bearer abc",
        "set_cookie": "c",
        "private_key": "pem",
        "aws_credentials": {"id": "AKIA"},
    }

    redacted = redact_arguments(arguments)

    assert redacted["url"] == "https://example.com"
    masked = {key for key, value in redacted.items() if value == "***"}
    assert masked == set(arguments) - {"url"}


def test_globs_mask_matching_keys_case_insensitively_at_any_depth() -> None:
    arguments = {
        "SSN": "123-45-6789",
        "user": {"ssn": "987", "card_number": "4111", "name": "Ann"},
        "rows": [{"card_cvv": "123", "id": 1}],
    }

    redacted = redact_arguments(arguments, ["ssn", "card_*"])

    assert redacted == {
        "SSN": "***",
        "user": {"ssn": "***", "card_number": "***", "name": "Ann"},
        "rows": [{"card_cvv": "***", "id": 1}],
    }


def test_redaction_never_touches_the_original() -> None:
    arguments = {"nested": {"token": "t", "keep": [1, {"secret": "s"}]}}

    redacted = redact_arguments(arguments)

    assert arguments == {"nested": {"token": "t", "keep": [1, {"secret": "s"}]}}
    assert redacted == {"nested": {"token": "***", "keep": [1, {"secret": "***"}]}}
    assert redacted["nested"] is not arguments["nested"]


def test_a_masked_container_is_replaced_whole() -> None:
    assert redact_arguments({"credentials": {"user": "a", "pass": "b"}}) == {"credentials": "***"}


def test_non_mappings_pass_through() -> None:
    assert redact_arguments(None) is None
    assert redact_arguments([{"token": 1}, "x"]) == [{"token": "***"}, "x"]
    assert redact_arguments("password") == "password"


def test_plain_keys_are_not_masked() -> None:
    arguments = {"path": "/tmp/a", "count": 3, "pass_through": True}

    assert redact_arguments(arguments) == arguments


def test_the_hash_is_sha256_of_canonical_json() -> None:
    arguments = {"b": 1, "a": ["é", {"y": None, "x": 2.5}]}
    canonical = '{"a":["é",{"x":2.5,"y":null}],"b":1}'

    assert canonical_arguments_hash(arguments) == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_hash_ignores_key_order_and_none_means_empty() -> None:
    assert canonical_arguments_hash({"a": 1, "b": 2}) == canonical_arguments_hash({"b": 2, "a": 1})
    assert canonical_arguments_hash(None) == canonical_arguments_hash({})
    assert canonical_arguments_hash(None) == hashlib.sha256(b"{}").hexdigest()


def test_any_change_in_arguments_changes_the_hash() -> None:
    base = canonical_arguments_hash({"path": "a.txt", "force": False})

    assert canonical_arguments_hash({"path": "a.txt", "force": True}) != base
    assert canonical_arguments_hash({"path": "a.txt", "force": 0}) != base
    assert canonical_arguments_hash({"path": "a.txt"}) != base
