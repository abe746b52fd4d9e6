"""Input limits at the edge: no request reaches a route unless it is bounded and storable.

`InputLimits` is a pure ASGI middleware in front of every route (API, dashboard,
Slack, interceptors, websockets). Each refusal is a 4xx in the error envelope:

- request headers over `max_header_bytes` -> 431 `headers_too_large`;
- a body over `max_body_bytes` (declared or streamed) -> 413 `body_too_large`;
- a JSON body nested deeper than `max_json_depth` -> 422 `json_too_deep`
  (Python's parser would hit its recursion limit);
- a JSON body that is not UTF-8, or escapes a lone UTF-16 surrogate (`"\\ud800"`)
  -> 422 `invalid_unicode`: such a string cannot be encoded, so storing it would
  poison every later read of the row;
- a NUL in the URL, a form field or a JSON string -> 422 `nul_character`
  (PostgreSQL refuses it in text);
- NaN, Infinity or a number beyond a double in a JSON body -> 422 `invalid_number`
  (not JSON, and PostgreSQL refuses it).

A JSON text message on a websocket that breaks the JSON rules closes the socket
with 1007. The server bounds websocket message size (`signoff serve` passes
`ws_max_size`).

The common request is small and flat, and the write routes serve thousands a
second, so each scan is gated by a cheap test of the bytes: the depth scan runs
only when the body holds more brackets than the limit, the escape scan only when
it holds a `\\u`, the number scan only when it holds something number-like
that could overflow.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate, chain

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from approvals.api.errors import error_body

# A JSON string (escapes included); an unterminated one runs to the end, so that one
# stray quote cannot make the scan start over at every later quote (quadratic).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
# One backslash escape. Scanning escapes left to right pairs `\\` correctly, so the
# `ud800` in `\\ud800` is not mistaken for an escape.
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
# Depth step per byte of a string-free JSON text: +1 opens, -1 closes, 0 otherwise.
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if not _STEP[b])
# Numbers a store cannot keep: NaN and Infinity (Python reads them; JSON has no such
# thing and PostgreSQL refuses them), and literals beyond a double, which read as
# infinity: an exponent of three digits or more, or 309 digits before the point.
# The hints are literal-led, so the common body costs a few fast scans; the exact
# pattern runs only after a hint, on the text without its strings.
_EXPONENT_HINT = re.compile(rb"e\+?[0-9]{3}")
_EXPONENT_HINT_UPPER = re.compile(rb"E\+?[0-9]{3}")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 309
_RISKY_NUMBER = re.compile(
    rb"NaN|Infinity"
    rb"|-?[0-9]+(?:\.[0-9]+)?[eE]\+?[0-9]{3,}"
    rb"|-?[0-9]{309,}(?:\.[0-9]+|[eE][+-]?[0-9]+)"
)
# Docker's MCP gateway parses an interceptor's answer as a CallToolResult; giving it
# one as well lets the agent read why its call was refused.
_TOOL_RESULT_PREFIX = "/api/v1/interceptors/"


@dataclass(frozen=True)
class Refusal:
    """Why an input is refused: the HTTP status and the envelope's code and message."""

    status: int
    code: str
    message: str


def json_depth_exceeds(text: bytes, limit: int) -> bool:
    """Whether the JSON `text` nests arrays and objects deeper than `limit`.

    Unclosed brackets count as open, so a truncated document is judged by the depth a
    parser would reach before it notices."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets))) > limit


def unstorable_escape(text: bytes) -> Refusal | None:
    """A `\\u` escape of the JSON `text` that yields a string no store can hold, or None.

    A lone UTF-16 surrogate cannot be encoded as UTF-8 at all; PostgreSQL refuses a NUL
    in text. SQLite would take the NUL, but a request must not depend on the store."""
    if b"\\u" not in text:
        return None
    high_ends = -1  # where the last unpaired high surrogate escape ended
    for escape in _ESCAPE.finditer(text):
        unit = escape.group(1)
        value = int(unit, 16) if unit is not None else -1
        if high_ends >= 0:
            if escape.start() != high_ends or not 0xDC00 <= value <= 0xDFFF:
                return _LONE_SURROGATE
            high_ends = -1
        elif 0xD800 <= value <= 0xDBFF:
            high_ends = escape.end()
        elif 0xDC00 <= value <= 0xDFFF:
            return _LONE_SURROGATE
        elif value == 0:
            return _NUL
    return _LONE_SURROGATE if high_ends >= 0 else None


def non_finite_number(text: bytes) -> bool:
    """Whether the JSON `text` holds NaN, Infinity or a number too large for a double."""
    if not (
        b"NaN" in text
        or b"Infinity" in text
        or _EXPONENT_HINT.search(text)
        or (b"E" in text and _EXPONENT_HINT_UPPER.search(text))
        or (len(text) > 309 and _LONG_DIGIT_RUN in text.translate(_DIGITS_AS_ZERO))
    ):
        return False
    for number in _RISKY_NUMBER.finditer(_STRING.sub(b'""', text)):
        if not math.isfinite(float(number.group())):
            return True
    return False


_LONE_SURROGATE = Refusal(
    422, "invalid_unicode", "escapes a lone UTF-16 surrogate (\\ud800-\\udfff not in a pair)"
)
_NUL = Refusal(422, "nul_character", "contains a NUL character, which no text field can hold")


def json_refusal(text: bytes, max_depth: int, what: str = "the JSON body") -> Refusal | None:
    """Why the JSON document `text` must not reach a parser, or None."""
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal(422, "invalid_unicode", f"{what} is not valid UTF-8")
    escape = unstorable_escape(text)
    if escape is not None:
        return Refusal(escape.status, escape.code, f"{what} {escape.message}")
    if json_depth_exceeds(text, max_depth):
        return Refusal(422, "json_too_deep", f"{what} nests deeper than {max_depth} levels")
    if non_finite_number(text):
        return Refusal(
            422,
            "invalid_number",
            f"{what} holds NaN, Infinity or a number beyond the range of a double",
        )
    return None


_AMBIGUOUS = "the request carries Content-Type or Content-Length more than once"


def _is_json(content_type: bytes, body: bytes) -> bool:
    """Whether a route might parse `body` as JSON. Some parse whatever the declared type
    (the Docker interceptor), so a body that looks like JSON is checked as JSON."""
    if body.lstrip()[:1] in (b"{", b"["):
        return True
    media = content_type.partition(b";")[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def _form_refusal(content_type: bytes, body: bytes) -> Refusal | None:
    """A form field holding a NUL (the dashboard stores comments), or None."""
    media = content_type.partition(b";")[0].strip().lower()
    if media == b"application/x-www-form-urlencoded":
        nul = b"%00" in body or b"\x00" in body
    elif media == b"multipart/form-data":
        nul = b"\x00" in body  # no route takes files, so no field is binary
    else:
        return None
    return Refusal(422, _NUL.code, f"a form field {_NUL.message}") if nul else None


class InputLimits:
    """ASGI middleware: refuse input no route should parse or store (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = 1_048_576,
        max_json_depth: int = 64,
        max_header_bytes: int = 16_384,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _headers_refusal(self, scope: Scope) -> Refusal | None:
        headers = scope["headers"]
        # Each line also carries ": " and CRLF.
        size = sum(map(len, chain.from_iterable(headers))) + 4 * len(headers)
        if size > self.max_header_bytes:
            return Refusal(
                431,
                "headers_too_large",
                f"the request headers exceed {self.max_header_bytes} bytes",
            )
        return None

    def _too_large(self) -> Refusal:
        return Refusal(
            413, "body_too_large", f"the request body exceeds {self.max_body_bytes} bytes"
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._headers_refusal(scope)
        if refusal is not None:
            await _answer(scope, send, refusal)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            await _answer(scope, send, Refusal(422, _NUL.code, f"the URL {_NUL.message}"))
            return
        fields = dict(scope["headers"])
        names = [name for name, _ in scope["headers"]]
        if names.count(b"content-type") > 1 or names.count(b"content-length") > 1:
            # Which one would a route believe? Refuse rather than check one and parse the other.
            await _answer(scope, send, Refusal(400, "ambiguous_headers", _AMBIGUOUS))
            return
        declared = fields.get(b"content-length")
        if not declared and b"transfer-encoding" not in fields:
            await self.app(scope, receive, send)  # no body: nothing to bound
            return
        # The server vets Content-Length; should it not, what arrives is counted anyway.
        length = int(declared) if declared and declared.isdigit() else 0
        if length > self.max_body_bytes:
            # The server discards the unread rest and keeps the connection usable.
            await _answer(scope, send, self._too_large())
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away mid-body: nobody to answer
        if isinstance(body, Refusal):
            await _answer(scope, send, body)
            return
        content_type = fields.get(b"content-type", b"")
        if _is_json(content_type, body):
            refusal = json_refusal(body, self.max_json_depth)
        else:
            refusal = _form_refusal(content_type, body)
        if refusal is not None:
            await _answer(scope, send, refusal)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later reads wait for the client's disconnect

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | Refusal | None:
        """The whole body, a refusal once it outgrows the limit, or None on disconnect."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        if len(body) > self.max_body_bytes:
            return self._too_large()
        if not message.get("more_body", False):
            return body  # the common case: the whole body in one message
        chunks = [body]
        total = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._headers_refusal(scope)
        if refusal is not None:
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                await _answer(scope, send, refusal, prefix="websocket.")
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.code})
            return
        closed = False

        async def checked_receive() -> Message:
            nonlocal closed
            message = await receive()
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if text and text.lstrip()[:1] in ("{", "["):
                problem = json_refusal(text.encode(), self.max_json_depth)
                if problem is not None:
                    closed = True
                    # 1007: the message's data is not consistent with its type.
                    await send({"type": "websocket.close", "code": 1007, "reason": problem.code})
                    return {"type": "websocket.disconnect", "code": 1007}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:  # after our close the app's late sends have nowhere to go
                await send(message)

        await self.app(scope, checked_receive, guarded_send)


async def _answer(scope: Scope, send: Send, refusal: Refusal, prefix: str = "") -> None:
    document: dict[str, object] = dict(error_body(refusal.code, refusal.message))
    if scope.get("path", "").startswith(_TOOL_RESULT_PREFIX):
        text = f"Signoff refused the call: {refusal.message}."
        document.update(content=[{"type": "text", "text": text}], isError=True)
    body = json.dumps(document).encode()
    await send(
        {
            "type": f"{prefix}http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": f"{prefix}http.response.body", "body": body})
