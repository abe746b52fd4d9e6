"""Bad input gets a 4xx in the error envelope, never a 5xx, and nothing invalid is stored.

Against a real `signoff serve`: oversized headers and bodies, JSON nested 1,000
deep, lone UTF-16 surrogates, NULs, numbers beyond a double, broken cursors,
websocket messages, and generated bodies thrown at the create and decide routes.
The service log must stay free of tracebacks.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import ServiceProcess, held_call_body, queue_held_call
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

# PostgreSQL refuses text SQLite takes (a NUL, Infinity in JSON): both must refuse alike.
STORES = ("sqlite", "postgresql")
MIB = 1_048_576


def refused(response: httpx.Response, status: int, code: str) -> None:
    """`response` is the documented error envelope with this status and code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def enveloped(response: httpx.Response) -> None:
    """Any answer to bad input: below 500, and an error carries the envelope."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


def nested(depth: int) -> bytes:
    return b'{"tool": "t", "caller": "c", "arguments": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


def cursor_of(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def stored_requests(reader: httpx.Client) -> list[dict[str, Any]]:
    """Every request the service lists, page by page (each page must answer 200)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = reader.get("/requests", params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if not page.json()["next_cursor"]:
            return items
        params["cursor"] = page.json()["next_cursor"]


@pytest.fixture(scope="module")
def raw(service: ServiceProcess) -> Iterator[httpx.Client]:
    """A client that sends exactly the bytes a test gives it."""
    token = service.token("gateway", "gw-raw")
    with httpx.Client(
        base_url=f"{service.url}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        yield client


# --- sizes -------------------------------------------------------------------------------


def test_a_body_one_byte_over_a_mebibyte_is_refused_before_it_is_read(
    raw: httpx.Client, team: Any
) -> None:
    before = len(stored_requests(team.auditor))
    body = json.dumps(held_call_body(arguments={"blob": "x" * MIB})).encode()
    refused(raw.post("/requests", content=body[: MIB + 1]), 413, "body_too_large")
    assert len(stored_requests(team.auditor)) == before


def test_a_streamed_body_is_counted_as_it_arrives(raw: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to check up front
        yield b'{"tool": "t", "caller": "c", "arguments": {"blob": "'
        for _ in range(17):
            yield b"x" * 65_536
        yield b'"}}'

    response = raw.post("/requests", content=chunks(), headers={"Content-Type": "text/plain"})
    refused(response, 413, "body_too_large")


def test_a_body_just_under_the_limit_reaches_the_route(raw: httpx.Client) -> None:
    body = json.dumps({"tool": "t", "caller": "c", "arguments": {"blob": "x" * (MIB - 100)}})
    response = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code not in (413, 500), response.text


def test_a_megabyte_of_headers_is_refused_with_431(service: ServiceProcess) -> None:
    response = httpx.get(f"{service.url}/healthz", headers={"X-Padding": "a" * 1_000_000})
    refused(response, 431, "headers_too_large")
    assert httpx.get(f"{service.url}/healthz").status_code == 200


# --- JSON --------------------------------------------------------------------------------


def test_json_nested_a_thousand_deep_is_refused_with_422(raw: httpx.Client, team: Any) -> None:
    before = len(stored_requests(team.auditor))
    sent = raw.post("/requests", content=nested(1000), headers={"Content-Type": "application/json"})
    refused(sent, 422, "json_too_deep")
    # FastAPI reads a body without a content type as JSON too.
    refused(raw.post("/requests", content=nested(1000)), 422, "json_too_deep")
    assert len(stored_requests(team.auditor)) == before


def test_json_exactly_at_the_depth_limit_reaches_the_route(raw: httpx.Client) -> None:
    json_type = {"Content-Type": "application/json"}
    at_limit = raw.post("/requests", content=nested(62), headers=json_type)  # 64 levels
    assert at_limit.status_code < 500
    assert at_limit.json().get("error", {}).get("code") != "json_too_deep"
    refused(raw.post("/requests", content=nested(63), headers=json_type), 422, "json_too_deep")


def test_brackets_inside_strings_do_not_count_as_depth(raw: httpx.Client) -> None:
    body = json.dumps({"tool": "t", "caller": "c", "arguments": {"a": "[" * 5000}})
    response = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500
    assert response.json().get("error", {}).get("code") != "json_too_deep"


def test_the_docker_interceptor_refuses_deep_json_with_a_tool_result(
    service: ServiceProcess,
) -> None:
    token = service.token("gateway", "docker-deep")
    body = b'{"method": "tools/call", "params": {"name": "t", "arguments": {"a": '
    body += b"[" * 1000 + b"]" * 1000 + b"}}}"
    response = httpx.post(
        f"{service.url}/api/v1/interceptors/docker?token={token}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    refused(response, 422, "json_too_deep")
    # Docker's gateway reads the answer as a CallToolResult: the agent learns why.
    assert response.json()["isError"] is True
    assert "deeper than 64" in response.json()["content"][0]["text"]


def test_a_lone_surrogate_is_refused_and_nothing_is_stored(raw: httpx.Client, team: Any) -> None:
    before = len(stored_requests(team.auditor))
    for poison in ('"\\ud800"', '"x\\udc00"', '"\\ud800\\u0041"'):
        body = json.dumps(held_call_body(caller="agent-7")).replace('"agent-7"', poison)
        sent = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
        refused(sent, 422, "invalid_unicode")
    paired = json.dumps(held_call_body(caller="agent-\U0001f600"))  # ensure_ascii: a pair
    assert "\\ud83d\\ude00" in paired
    created = raw.post("/requests", content=paired, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert len(stored_requests(team.auditor)) == before + 1


@pytest.mark.parametrize("literal", ["1e400", "-1E+0400", "NaN", "-Infinity", "9" * 400 + ".5"])
def test_numbers_no_store_can_keep_are_refused(raw: httpx.Client, literal: str) -> None:
    body = json.dumps(held_call_body()).replace(
        '"arguments": {', f'"arguments": {{"n": {literal}, '
    )
    sent = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
    refused(sent, 422, "invalid_number")


def test_large_finite_numbers_and_number_like_strings_are_kept(raw: httpx.Client) -> None:
    arguments = '{"n": 1e300, "big": ' + "9" * 400 + ', "s": "NaN 1e400 Infinity"}'
    body = json.dumps(held_call_body()).replace('{"outputPath"', arguments[:-1] + ', "outputPath"')
    created = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["arguments"]["s"] == "NaN 1e400 Infinity"


def test_a_nul_is_refused_wherever_it_would_be_stored(
    raw: httpx.Client, team: Any, service: ServiceProcess
) -> None:
    body = json.dumps(held_call_body(caller="agent-\x00"))
    sent = raw.post("/requests", content=body, headers={"Content-Type": "application/json"})
    refused(sent, 422, "nul_character")
    refused(team.auditor.get("/requests", params={"tool": "a\x00"}), 422, "nul_character")
    refused(team.auditor.get("/requests/a%00b"), 422, "nul_character")
    request = queue_held_call(team.gateway)
    form = httpx.post(
        f"{service.url}/requests/{request['id']}/decide",
        data={"decision": "approve", "comment": "a\x00b"},
    )
    refused(form, 422, "nul_character")
    assert team.auditor.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_bytes_that_are_not_utf8_are_refused(raw: httpx.Client) -> None:
    body = json.dumps(held_call_body()).encode().replace(b"agent-7", b"agent-\xff")
    refused(
        raw.post("/requests", content=body, headers={"Content-Type": "application/json"}),
        422,
        "invalid_unicode",
    )


# --- websockets --------------------------------------------------------------------------


def events_url(service: ServiceProcess) -> str:
    return str(service.url).replace("http://", "ws://") + "/api/v1/events"


async def closing_code(service: ServiceProcess, message: str) -> int:
    """The close code the service answers `message`, the socket's first message, with."""
    async with connect(events_url(service)) as ws:
        await ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return int(closed.value.rcvd.code)


@pytest.mark.anyio
async def test_a_deep_or_broken_websocket_message_closes_the_socket_with_1007(
    service: ServiceProcess,
) -> None:
    deep = '{"type": "auth", "token": ' + "[" * 1000 + "]" * 1000 + "}"
    assert await closing_code(service, deep) == 1007
    assert await closing_code(service, '{"type": "auth", "token": "\\ud800"}') == 1007
    assert await closing_code(service, '{"type": "auth", "token": "nope"}') == 1008


@pytest.mark.anyio
async def test_a_websocket_message_over_the_body_limit_closes_the_socket_with_1009(
    service: ServiceProcess,
) -> None:
    assert await closing_code(service, "x" * (MIB + 1)) == 1009


@pytest.mark.anyio
async def test_a_websocket_handshake_with_oversized_headers_gets_431(
    service: ServiceProcess,
) -> None:
    # Lines under 8 KiB each: longer ones fail in the websocket library's own parser
    # (uvicorn 0.54, websockets 17), which then never answers; they never reach us.
    padding = {f"X-Padding-{i}": "a" * 6000 for i in range(4)}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(events_url(service), additional_headers=padding):
            pass
    assert refused.value.response.status_code == 431
    assert json.loads(refused.value.response.body)["error"]["code"] == "headers_too_large"


# --- cursors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "bm90IGpzb24",  # base64 of "not json"
        cursor_of(["2026-01-01T00:00:00", "abc"]),  # a naive time
        cursor_of(["0001-01-01T00:00:00+05:00", "abc"]),  # before year 1 in UTC
        cursor_of(["2026-01-01T00:00:00+00:00", "\ud800"]),
        cursor_of(["2026-01-01T00:00:00+00:00", "a\x00b"]),
        cursor_of(["2026-01-01T00:00:00+00:00", 7]),
        cursor_of({"a": 1, "b": 2}),
        cursor_of([[[[[[[]]]]]], "x"]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_the_service_did_not_make_is_a_400(team: Any, cursor: str) -> None:
    refused(team.auditor.get("/requests", params={"cursor": cursor}), 400, "invalid_cursor")


def test_the_cursors_the_service_makes_still_page(team: Any) -> None:
    for _ in range(3):
        queue_held_call(team.gateway)
    first = team.auditor.get("/requests", params={"limit": 2}).json()
    second = team.auditor.get("/requests", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200 and second.json()["items"]
    assert {i["id"] for i in first["items"]}.isdisjoint(i["id"] for i in second.json()["items"])


# --- generated bodies --------------------------------------------------------------------


class Raw(str):
    """JSON text written as is: number literals json.dumps would not produce."""


# Any character, lone surrogates included (json.dumps writes them as "\udXXX").
_texts = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)
_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=1, max_value=6000).map(lambda n: Raw("9" * n)),  # past int() limits
    st.sampled_from(["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-0", "0.1e99999"]).map(Raw),
)
_scalars = st.one_of(st.none(), st.booleans(), _texts, _numbers, st.floats())
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)


def _encode(value: Any) -> str:
    """JSON text for `value`, `Raw` pieces as they are."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # ensure_ascii: a lone surrogate becomes "\udXXX"


def _deep(depth: int, unclosed: bool) -> Raw:
    return Raw("[" * depth + "1" + ("" if unclosed else "]" * depth))


@st.composite
def bodies(
    draw: st.DrawFn,
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
) -> bytes:
    """A body for a route: mostly plausible enough to be stored (one field may still be
    deep), else anything at all: fields missing, of the wrong type, extra."""
    plausible = draw(st.sampled_from([True, True, True, False]))
    document: dict[str, Any] = {}
    for name, strategy in required.items():
        if plausible:
            document[name] = draw(strategy)
        elif draw(st.booleans()):
            document[name] = draw(strategy | _values)
    for name, strategy in optional.items():
        if draw(st.booleans()):
            document[name] = draw(strategy if plausible else strategy | _values)
    depth = draw(st.sampled_from([0, 0, 0, 0, 0, 10, 63, 65, 1000, 3000]))
    unclosed = draw(st.booleans())  # as a truncated upload would be
    if plausible:
        if depth and document:
            document[draw(st.sampled_from(sorted(document)))] = _deep(depth, unclosed)
        return _encode(document).encode("utf-8", "surrogatepass")
    for extra in draw(st.lists(_texts, max_size=2)):
        document[extra] = draw(_values)
    text = _encode(document) if draw(st.booleans()) else _encode(draw(_values))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    text = opener * depth + text + ("" if unclosed else closer * depth)
    return text.encode("utf-8", "surrogatepass")


# What a well-behaved client would send, for the plausible half.
_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
_create = bodies(
    {
        "tool": st.sampled_from(["end_codegen_session", "search"]) | _names,
        "caller": st.just("agent-7") | _names,
        "arguments": st.dictionaries(_names, _values, max_size=3),
    },
    {"server": st.sampled_from(["", "playwright"]), "session_id": _names, "arguments_hash": _texts},
)
_decision = bodies(
    {"decision": st.sampled_from(["approve", "reject", "maybe"])}, {"comment": _texts}
)
_CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "text/plain",
    ]
)
_generated = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_generated
@given(body=_create, content_type=_CONTENT_TYPES)
def test_generated_create_bodies_never_get_a_5xx(
    raw: httpx.Client, body: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = raw.post("/requests", content=body, headers=headers)
    event(f"answered {response.status_code}")  # --hypothesis-show-statistics
    enveloped(response)


@pytest.fixture(scope="module")
def pending_id(team: Any) -> str:
    return str(queue_held_call(team.gateway)["id"])


@_generated
@given(body=_decision, content_type=_CONTENT_TYPES)
def test_generated_decisions_never_get_a_5xx(
    team: Any, pending_id: str, body: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    sent = team.alice.post(f"/requests/{pending_id}/decisions", content=body, headers=headers)
    event(f"answered {sent.status_code}")
    enveloped(sent)


def test_the_openapi_document_still_builds(service: ServiceProcess) -> None:
    document = httpx.get(f"{service.url}/openapi.json", timeout=30)
    assert document.status_code == 200 and "/api/v1/requests" in document.json()["paths"]


def test_every_stored_request_still_reads_and_the_log_has_no_traceback(
    service: ServiceProcess, team: Any
) -> None:
    for item in stored_requests(team.auditor):
        assert team.auditor.get(f"/requests/{item['id']}").status_code == 200
    log = service.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]
