"""An auditor exports the audit log from a real service: formats, filters, roles, safety."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.audit.chain import FIELDS, hash_of
from approvals.audit.export import ExportFilter, csv_value, parse_time, stream_export
from approvals.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def call(tool: str, caller: str, arguments: dict[str, Any], n: int) -> dict[str, Any]:
    # `n` keeps the calls distinct; the service's policy (tests/support.py) sets the terms.
    return {
        "tool": tool,
        "server": "playwright",
        "caller": caller,
        "arguments": {**arguments, "n": n},
    }


@pytest.fixture(scope="module")
def story(team: Any) -> list[dict[str, Any]]:
    """A small history: an approved and run call, a rejected one, and a gateway denial."""
    approved = team.gateway.post(
        "/requests", json=call("end_codegen_session", "agent-7", {"outputPath": "/tmp/x"}, 1)
    ).json()
    team.alice.post(
        f"/requests/{approved['id']}/decisions",
        json={"decision": "approve", "comment": 'fine, "really"\r\nline 2 \u2713'},
    )
    team.gateway.post(f"/requests/{approved['id']}/claim")
    team.gateway.post(
        f"/requests/{approved['id']}/outcome", json={"is_error": False, "summary": "'quoted'"}
    )
    # An agent (or whoever controls its input) tries to smuggle formulas into a spreadsheet.
    hostile = {"title": '=HYPERLINK("http://evil.example","click")', "note": "-2+3"}
    rejected = team.gateway.post("/requests", json=call("send_mail", "@agent", hostile, 2)).json()
    team.bob.post(
        f"/requests/{rejected['id']}/decisions", json={"decision": "reject", "comment": "=1+2"}
    )
    team.gateway.post(
        "/audit/events",
        json={"events": [{"type": "policy.denied", "tool": "playwright_evaluate", "caller": "+x"}]},
    )
    events = jsonl(team.auditor.get("/audit/export", params={"format": "jsonl"}))
    assert len(events) == 9
    return events


def jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Read an exported CSV back into events: empty cells are null, one guard quote stripped."""
    events = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        event: dict[str, Any] = {k: csv_value(v) if v else None for k, v in row.items()}
        event["id"] = int(event["id"])
        if event["arguments"] is not None:
            event["arguments"] = json.loads(event["arguments"])
        events.append(event)
    return events


def export(team: Any, **params: Any) -> list[dict[str, Any]]:
    return jsonl(team.auditor.get("/audit/export", params={"format": "jsonl", **params}))


def test_all_three_formats_read_back_as_the_same_events(team: Any, story: list[Any]) -> None:
    as_csv = team.auditor.get("/audit/export", params={"format": "csv"})
    as_json = team.auditor.get("/audit/export", params={"format": "json"})
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_json.headers["content-type"] == "application/json"
    assert "attachment" in as_csv.headers["content-disposition"]
    assert as_csv.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered

    assert as_csv.text.splitlines()[0] == ",".join(FIELDS)
    assert parse_csv(as_csv.text) == story
    assert story[1]["comment"] == 'fine, "really"\r\nline 2 \u2713'
    assert story[4]["comment"] == "'quoted'"
    assert as_json.json() == story
    assert [e["type"] for e in story] == [
        "request.created",
        "decision.recorded",
        "request.approved",
        "call.forwarded",
        "call.succeeded",
        "request.created",
        "decision.recorded",
        "request.rejected",
        "policy.denied",
    ]


def test_an_exported_file_can_be_checked_on_its_own(story: list[dict[str, Any]]) -> None:
    previous = "0" * 64
    for event in story:
        stored = dict(event)
        stored["arguments"] = (
            None
            if event["arguments"] is None
            else json.dumps(event["arguments"], sort_keys=True, separators=(",", ":"))
        )
        assert event["prev_hash"] == previous
        assert hash_of(stored) == event["hash"]
        previous = event["hash"]

    tampered = dict(story[2], actor="mallory", arguments=None)
    assert hash_of(tampered) != story[2]["hash"]


def test_filters_by_tool_actor_and_type(team: Any, story: list[dict[str, Any]]) -> None:
    mail = export(team, tool="send_mail")
    assert [e["type"] for e in mail] == ["request.created", "decision.recorded", "request.rejected"]

    by_alice = export(team, actor="alice")
    assert [e["type"] for e in by_alice] == ["decision.recorded", "request.approved"]

    votes = export(team, type="decision.recorded")
    assert [e["actor"] for e in votes] == ["alice", "bob"]
    both = [e["id"] for e in story if e["type"] in ("request.created", "policy.denied")]
    assert [e["id"] for e in export(team, type=["request.created", "policy.denied"])] == both
    assert [e["id"] for e in export(team, type="request.created,policy.denied")] == both

    assert export(team, tool="send_mail", actor="alice") == []
    assert export(team, tool="no_such_tool") == []


def test_time_filters_are_iso_8601_since_inclusive_until_exclusive(
    team: Any, story: list[dict[str, Any]]
) -> None:
    middle = story[5]["time"]  # the second request's creation
    later = [e for e in story if e["time"] >= middle]
    earlier = [e for e in story if e["time"] < middle]
    assert later and earlier

    assert export(team, since=middle) == later
    assert export(team, until=middle) == earlier
    assert export(team, since=story[0]["time"], until=middle) == earlier

    # The same instant written with another offset, and a bare date, mean the same.
    local = parse_time(middle).astimezone(parse_time("2026-01-01T00:00:00+02:00").tzinfo)
    assert export(team, since=local.isoformat()) == later
    assert export(team, since="2000-01-01") == story
    assert export(team, until="2000-01-01") == []


def test_empty_exports_are_still_well_formed(team: Any, story: list[Any]) -> None:
    params = {"tool": "nothing_matches"}
    as_csv = team.auditor.get("/audit/export", params={"format": "csv", **params})
    assert as_csv.text == ",".join(FIELDS) + "\r\n"
    assert team.auditor.get("/audit/export", params={"format": "json", **params}).json() == []
    assert team.auditor.get("/audit/export", params={"format": "jsonl", **params}).text == ""


def test_formula_like_values_are_neutralised_in_csv(team: Any, story: list[Any]) -> None:
    text = team.auditor.get("/audit/export", params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(FORMULA), (name, cell)

    rejection = next(r for r in rows if r["type"] == "request.rejected")
    assert (rejection["comment"], rejection["caller"]) == ("'=1+2", "'@agent")
    created = next(r for r in rows if r["tool"] == "send_mail")
    # Arguments are one JSON object per cell: it starts with "{", never with a formula.
    assert json.loads(created["arguments"])["title"].startswith("=HYPERLINK(")
    denied = next(r for r in rows if r["type"] == "policy.denied")
    assert denied["caller"] == "'+x"


def test_only_auditors_and_admins_may_export(team: Any, service: Any, story: list[Any]) -> None:
    for client in (team.alice, team.gateway):
        refused = client.get("/audit/export")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        assert "auditor" in refused.json()["error"]["message"]
    assert team.anonymous.get("/audit/export").status_code == 401
    admin = service.client(service.token("admin", "root"))
    assert jsonl(admin.get("/audit/export", params={"format": "jsonl"})) == story


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"format": "xml"}, "invalid_request"),
        ({"since": "last tuesday"}, "invalid_time"),
        ({"until": "2026-13-45T00:00:00Z"}, "invalid_time"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "invalid_time"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "invalid_time"),
        ({"type": "request.exploded"}, "invalid_type"),
        ({"tool": "x" * 300}, "invalid_request"),
    ],
)
def test_bad_export_parameters_get_a_json_422(team: Any, params: dict[str, str], code: str) -> None:
    response = team.auditor.get("/audit/export", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_small_batches_page_through_the_same_events(service: Any, story: list[Any]) -> None:
    engine = make_engine(service.db_url)
    try:
        for flt in (ExportFilter(), ExportFilter(since=parse_time(story[3]["time"]))):
            text = b"".join(stream_export(engine, flt, "jsonl", batch_size=2)).decode()
            expected = [e for e in story if flt.since is None or e["id"] >= story[3]["id"]]
            assert [json.loads(line) for line in text.splitlines()] == expected
        by_type = ExportFilter(types=("request.created", "policy.denied"))
        text = b"".join(stream_export(engine, by_type, "json", batch_size=1)).decode()
        assert [e["type"] for e in json.loads(text)] == [
            "request.created",
            "request.created",
            "policy.denied",
        ]
    finally:
        engine.dispose()


def signoff(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        **kwargs,
    )


@pytest.fixture(scope="module")
def auditor_token(service: Any) -> str:
    return str(service.token("auditor", "audrey-cli"))


def test_the_cli_writes_the_same_export_to_a_file(
    team: Any, service: Any, auditor_token: str, story: list[Any], tmp_path: Path
) -> None:
    common = ["--service", service.url, "--token", auditor_token]
    out = tmp_path / "audit.csv"
    result = signoff("audit", "export", "--since", "2000-01-01", "-o", str(out), *common)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # no progress bar when not a terminal
    api = team.auditor.get("/audit/export", params={"format": "csv"}).content
    assert out.read_bytes() == api
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind

    as_jsonl = tmp_path / "audit.jsonl"
    assert signoff("audit", "export", "-o", str(as_jsonl), *common).returncode == 0
    assert [json.loads(line) for line in as_jsonl.read_text().splitlines()] == story

    piped = signoff(
        "audit", "export", "--format", "json", "--tool", "send_mail", "--type", "request.rejected",
        *common,
    )  # fmt: skip
    assert piped.returncode == 0
    assert [e["comment"] for e in json.loads(piped.stdout)] == ["=1+2"]


def test_the_cli_refuses_bad_input_without_a_traceback(
    service: Any, auditor_token: str, team: Any, tmp_path: Path
) -> None:
    out = tmp_path / "never.csv"
    bad_time = signoff(
        "audit", "export", "--since", "yesterday", "-o", str(out),
        "--service", service.url, "--token", auditor_token,
    )  # fmt: skip
    assert bad_time.returncode == 2 and "--since must be an ISO 8601" in bad_time.stderr

    approver = service.token("approver", "eve")
    refused = signoff(
        "audit", "export", "-o", str(out), "--service", service.url, "--token", approver
    )
    assert refused.returncode == 2
    assert "auditor" in refused.stderr and "HTTP 403" in refused.stderr
    assert "Traceback" not in refused.stderr + bad_time.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _read_all(fd: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


def test_the_cli_shows_progress_on_a_terminal(
    service: Any, auditor_token: str, story: list[Any], tmp_path: Path
) -> None:
    leader, follower = pty.openpty()
    out = tmp_path / "audit.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "approvals.cli.main", "audit", "export", "-o", str(out),
             "--service", service.url, "--token", auditor_token],
            stdout=subprocess.PIPE, stderr=follower, cwd=ROOT, timeout=60,
        )  # fmt: skip
    finally:
        os.close(follower)
    shown = b"".join(_read_all(leader)).decode()
    os.close(leader)
    assert result.returncode == 0
    # The rate's unit depends on how fast this machine is: kB/s or MB/s.
    assert shown.startswith("\rexporting: ") and re.search(r"\([\d.]+ [kMG]?B/s\)", shown)
    assert f"exported {out.stat().st_size / 1000:.1f} kB to {out} in " in shown
    assert json.loads(out.read_text()) == story


def test_an_export_in_progress_never_stalls_writers(
    team: Any, service: Any, story: list[Any]
) -> None:
    from sqlalchemy import text

    from approvals.audit.chain import read_connection

    engine = make_engine(service.db_url)
    try:
        with read_connection(engine) as reading:
            # A read transaction is open (as while a batch is fetched) ...
            assert reading.execute(text("SELECT count(*) FROM audit_events")).scalar()
            # ... and the service still commits a new request and its audit event at once.
            created = team.gateway.post(
                "/requests", json=call("send_mail", "agent-9", {"to": "x"}, 99), timeout=3
            )
            assert created.status_code == 201
    finally:
        engine.dispose()
